"""MNIST (IDX files, gzipped or not), VOC multi-label classification (MMPretrain's ``VOC``),
CUB-200-2011 and ImageNet-21k: what they read from the official layouts, and errors that
name the file."""

import numpy as np
import pytest
from fake_data import write_cub, write_imagenet_like, write_mnist, write_voc_cls

from vistra.registry import DATASETS


def test_mnist_reads_gzipped_and_plain_idx_files(tmp_path):
    root = write_mnist(tmp_path / "mnist", n=5)
    train = DATASETS.build(dict(type="MNIST", data_prefix=str(root)))
    test = DATASETS.build(dict(type="MNIST", data_root=str(root), split="test"))
    assert len(train) == len(test) == 5
    info = train.get_data_info(3)
    assert info["img"].shape == (28, 28) and info["img"].dtype == np.uint8
    assert info["gt_label"] == 3 and train.metainfo["classes"][3] == "3 - three"


def test_mnist_without_files_says_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte .*never downloads"):
        DATASETS.build(dict(type="MNIST", data_prefix=str(tmp_path)))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x01")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        DATASETS.build(dict(type="MNIST", data_prefix=str(tmp_path)))


def test_voc_labels_and_difficult_labels_come_from_the_annotations(tmp_path):
    root = write_voc_cls(tmp_path / "VOC2007", n=4)
    data = DATASETS.build(dict(type="VOC", data_root=str(root), split="trainval"))
    assert len(data) == 4 and len(data.metainfo["classes"]) == 20
    first, second = data.get_data_info(0), data.get_data_info(1)
    # image 0: objects of classes 0 and 7, the second difficult; image 1: 1 and 8, neither
    assert (first["gt_label"], first["gt_label_difficult"]) == ([0], [7])
    assert (second["gt_label"], second["gt_label_difficult"]) == ([1, 8], [])
    assert first["img_path"].endswith("JPEGImages/trainval0000.jpg")
    sample = DATASETS.build(
        dict(type="VOC", data_root=str(root), split="test", pipeline=[
            dict(type="LoadImageFromFile"),
            dict(type="PackInputs", meta_keys=("img_path", "gt_label_difficult"))])
    )[0]["data_samples"]  # fmt: skip
    assert sample.gt_label.tolist() == [0] and sample.gt_label_difficult == [7]


def test_voc_errors_name_the_missing_file_and_the_valid_splits(tmp_path):
    with pytest.raises(ValueError, match="VOC split"):
        DATASETS.build(dict(type="VOC", data_root=str(tmp_path), split="training"))
    with pytest.raises(FileNotFoundError, match="ImageSets/Main/test.txt"):
        DATASETS.build(dict(type="VOC", data_root=str(tmp_path), split="test"))


def test_cub_splits_labels_and_class_names_come_from_the_release_tables(tmp_path):
    root = write_cub(tmp_path / "CUB_200_2011", n=4)  # 3 train, 1 test
    train = DATASETS.build(dict(type="CUB", data_root=str(root)))
    test = DATASETS.build(dict(type="CUB", data_root=str(root), split="test"))
    assert (len(train), len(test)) == (3, 1)
    assert train.metainfo["classes"] == ("Black_footed_Albatross", "Laysan_Albatross")
    assert [train.get_data_info(i)["gt_label"] for i in range(3)] == [0, 1, 0]
    assert test.get_data_info(0)["img_path"].endswith("images/002.Laysan_Albatross/bird_0003.jpg")
    with pytest.raises(FileNotFoundError, match="images.txt.* not found; data_root must be"):
        DATASETS.build(dict(type="CUB", data_root=str(tmp_path)))


def test_imagenet21k_reads_the_imagenet_layout_and_refuses_multi_label(tmp_path):
    root = write_imagenet_like(tmp_path / "in21k", n_train=2)
    data = DATASETS.build(dict(type="ImageNet21k", data_root=str(root), split="train"))
    assert len(data) == 2 and data.get_data_info(0)["img_path"].startswith(str(root / "train"))
    with pytest.raises(NotImplementedError, match="multi_label=True"):
        DATASETS.build(dict(type="ImageNet21k", data_root=str(root), multi_label=True))
