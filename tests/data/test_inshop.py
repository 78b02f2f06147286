"""InShop (DeepFashion In-shop Clothes Retrieval): the three splits of
Eval/list_eval_partition.txt, as MMPretrain reads them, and errors that name the file."""

from __future__ import annotations

import os

import pytest
from fake_data import write_inshop

from vistra.registry import DATASETS

PIPELINE = [dict(type="LoadImageFromFile"), dict(type="PackInputs")]


def _build(root, split, **kwargs):
    return DATASETS.build(dict(type="InShop", data_root=str(root), split=split, **kwargs))


def test_splits_labels_and_gallery_positions(tmp_path):
    root = write_inshop(tmp_path / "inshop", n_items=2, img_size=16)
    train, query, gallery = (_build(root, s) for s in ("train", "query", "gallery"))
    assert (len(train), len(query), len(gallery)) == (4, 2, 4)
    # training items are classes numbered by first appearance
    assert [train.get_data_info(i)["gt_label"] for i in range(4)] == [0, 0, 1, 1]
    # gallery images carry their position, queries the positions of their item's images
    assert [gallery.get_data_info(i)["sample_idx"] for i in range(4)] == [0, 1, 2, 3]
    assert "gt_label" not in gallery.get_data_info(0)
    assert [query.get_data_info(i)["gt_label"] for i in range(2)] == [[0, 1], [2, 3]]
    first = train.get_data_info(0)["img_path"]
    assert first == os.path.join(str(root), "Img", "img/WOMEN/Dresses/id_00000000/01_1_front.jpg")
    assert os.path.isfile(first)


def test_query_samples_pack_their_gallery_matches(tmp_path):
    root = write_inshop(tmp_path / "inshop", img_size=16)
    sample = _build(root, "query", pipeline=PIPELINE)[1]
    assert sample["data_samples"].gt_label.tolist() == [2, 3]
    packed = _build(root, "gallery", pipeline=PIPELINE)[3]["data_samples"]
    assert packed.sample_idx == 3 and "gt_label" not in packed


def test_a_bad_split_or_line_names_the_choices_and_the_file(tmp_path):
    root = write_inshop(tmp_path / "inshop", img_size=16)
    with pytest.raises(ValueError, match="InShop split='val'.*train, query, gallery"):
        _build(root, "val")
    ann = root / "Eval" / "list_eval_partition.txt"
    ann.write_text(ann.read_text() + "img/x.jpg id_9 validation\n")
    with pytest.raises(ValueError, match=r"list_eval_partition.txt:13: expected"):
        _build(root, "train")


def test_a_query_without_gallery_match_is_an_error(tmp_path):
    root = write_inshop(tmp_path / "inshop", img_size=16)
    ann = root / "Eval" / "list_eval_partition.txt"
    ann.write_text(ann.read_text() + "img/x.jpg id_9 query\n")
    assert len(_build(root, "gallery")) == 4  # the other splits do not need the match
    with pytest.raises(ValueError, match="item 'id_9', which no gallery image shows"):
        _build(root, "query")


def test_missing_partition_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt"):
        _build(tmp_path, "train")
