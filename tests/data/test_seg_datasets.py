"""Segmentation datasets (MMSeg 1.x): pairing, ann files, label maps, palettes, errors."""

from pathlib import Path

import numpy as np
import pytest

from vistra.data.datasets.ade import ADE20KDataset
from vistra.data.datasets.cityscapes import CityscapesDataset
from vistra.data.datasets.feetarch import FootArchDataset
from vistra.data.datasets.seg_base import BaseSegDataset
from vistra.data.datasets.voc import PascalVOCDataset
from vistra.data.datasets.wrappers import ConcatDataset
from vistra.data.errors import DataError
from vistra.registry import DATASETS

from .conftest import solid_rgb, write_png

MASK = np.array([[0, 1, 2, 255]] * 8, np.uint8).repeat(2, axis=1)  # 8x8


def _pair(root: Path, stem: str, img_dir: str, ann_dir: str, img_sfx: str, seg_sfx: str):
    write_png(root / img_dir / f"{stem}{img_sfx}", solid_rgb((10, 20, 30), 8, 8))
    write_png(root / ann_dir / f"{stem}{seg_sfx}", MASK)


@pytest.fixture
def seg_root(tmp_path: Path) -> Path:
    """img_dir/train/{b,a,sub/c}.png with masks ann_dir/train/{b,a,sub/c}.png."""
    for stem in ("b", "a", "sub/c"):
        _pair(tmp_path, stem, "img_dir/train", "ann_dir/train", ".png", ".png")
    (tmp_path / "img_dir" / "train" / "notes.txt").write_text("not an image")
    (tmp_path / "img_dir" / "train" / ".hidden.png").write_bytes(b"")
    return tmp_path


def _base(root: Path, **kwargs) -> BaseSegDataset:
    kwargs.setdefault("data_prefix", dict(img_path="img_dir/train", seg_map_path="ann_dir/train"))
    return BaseSegDataset(data_root=str(root), img_suffix=".png", **kwargs)


def test_scan_pairs_images_with_masks_sorted_recursive(seg_root):
    ds = _base(seg_root)
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    rel = [Path(i["img_path"]).relative_to(seg_root).as_posix() for i in infos]
    assert rel == ["img_dir/train/a.png", "img_dir/train/b.png", "img_dir/train/sub/c.png"]
    masks = [Path(i["seg_map_path"]).relative_to(seg_root).as_posix() for i in infos]
    assert masks == ["ann_dir/train/a.png", "ann_dir/train/b.png", "ann_dir/train/sub/c.png"]
    first = infos[0]
    assert first["label_map"] is None and first["reduce_zero_label"] is False
    assert first["seg_fields"] == [] and first["sample_idx"] == 0


def test_ann_file_keeps_its_order_and_appends_suffixes(seg_root):
    (seg_root / "split.txt").write_text("sub/c\n\nb\n")
    ds = _base(seg_root, ann_file="split.txt")
    names = [Path(ds.get_data_info(i)["img_path"]).name for i in range(len(ds))]
    assert names == ["c.png", "b.png"]
    assert ds.get_data_info(0)["seg_map_path"].endswith("ann_dir/train/sub/c.png")


def test_without_seg_map_path_loads_images_only(seg_root):
    ds = _base(seg_root, data_prefix=dict(img_path="img_dir/train"))
    assert len(ds) == 3 and "seg_map_path" not in ds.get_data_info(0)


def test_pipeline_runs_and_indices_subset(seg_root):
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")]
    ds = _base(seg_root, pipeline=pipeline, indices=2)
    assert len(ds) == 2
    out = ds[1]
    assert out["img"].shape == (8, 8, 3) and out["gt_seg_map"].tolist() == MASK.tolist()


def test_missing_image_folder_names_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        _base(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "img_dir" / "train") in msg
    assert "data_root/img_dir/train/*.png with masks in data_root/ann_dir/train/*.png" in msg


def test_ade_missing_folder_names_ade_layout(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"data_root/images/\{training,validation\}/\*\.jpg"
    ):
        ADE20KDataset(
            data_root=str(tmp_path),
            data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
        )


def test_image_without_mask_names_both_paths(seg_root):
    (seg_root / "ann_dir" / "train" / "b.png").unlink()
    with pytest.raises(DataError) as err:
        _base(seg_root)
    msg = str(err.value)
    assert "1 of 3 images" in msg
    assert str(seg_root / "img_dir/train/b.png") in msg
    assert str(seg_root / "ann_dir/train/b.png") in msg


def test_empty_folder_and_missing_ann_file_are_errors(seg_root):
    with pytest.raises(FileNotFoundError, match="no file ending with '.jpg'"):
        BaseSegDataset(
            data_root=str(seg_root),
            data_prefix=dict(img_path="img_dir/train", seg_map_path="ann_dir/train"),
        )
    with pytest.raises(FileNotFoundError, match="ann_file .*nope.txt.* not found"):
        _base(seg_root, ann_file="nope.txt")


def test_lazy_init_defers_the_scan(tmp_path):
    ds = _base(tmp_path, lazy_init=True)  # the folder does not exist: no error yet
    with pytest.raises(FileNotFoundError):
        len(ds)


def test_test_mode_needs_classes(seg_root):
    with pytest.raises(DataError, match="classes.*must be given when testing"):
        _base(seg_root, test_mode=True)
    ds = _base(seg_root, test_mode=True, metainfo=dict(classes=("bg", "fg")))
    assert ds.metainfo["classes"] == ("bg", "fg")


def test_random_palette_is_fixed_and_leaves_global_rng_alone(seg_root):
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    meta = dict(classes=("a", "b", "c"))
    p1 = _base(seg_root, metainfo=meta).metainfo["palette"]
    p2 = _base(seg_root, metainfo=meta).metainfo["palette"]
    assert np.random.rand() == expected_next
    assert p1 == p2 == np.random.RandomState(42).randint(0, 255, (3, 3)).tolist()


def test_palette_mismatch_is_loud(seg_root):
    # a DataError: one line "error: ..." from the CLI, not a traceback
    with pytest.raises(DataError, match=r"2 palette colours for 3 classes \('a', 'b', 'c'\)"):
        _base(seg_root, metainfo=dict(classes=("a", "b", "c"), palette=[[0, 0, 0], [1, 1, 1]]))


# ----------------------------------------------------------------------------- ADE20K
@pytest.fixture
def ade_root(tmp_path: Path) -> Path:
    for stem in ("x2", "x1"):
        _pair(tmp_path, stem, "images/validation", "annotations/validation", ".jpg", ".png")
    return tmp_path


def _ade(root: Path, **kwargs) -> ADE20KDataset:
    prefix = dict(img_path="images/validation", seg_map_path="annotations/validation")
    return ADE20KDataset(data_root=str(root), data_prefix=prefix, **kwargs)


def test_ade_classes_and_palette_are_mmseg_exact():
    meta = ADE20KDataset.METAINFO
    assert len(meta["classes"]) == 150 == len(meta["palette"])
    assert meta["classes"][0] == "wall" and meta["classes"][-1] == "flag"
    assert meta["classes"][7] == "bed "  # MMSeg's trailing space
    assert meta["palette"][0] == [120, 120, 120] and meta["palette"][-1] == [92, 0, 255]
    assert meta["classes"][12] == "person" and meta["palette"][12] == [150, 5, 61]


def test_ade_reduce_zero_label_through_load_annotations(ade_root):
    ds = _ade(ade_root, pipeline=[dict(type="LoadAnnotations")])
    assert ds.metainfo["reduce_zero_label"] is True
    assert [Path(ds.get_data_info(i)["img_path"]).name for i in range(2)] == ["x1.jpg", "x2.jpg"]
    seg = ds[0]["gt_seg_map"]
    assert seg[0, ::2].tolist() == [255, 0, 1, 255]


def test_ade_class_subset_gives_label_map_and_palette_subset(ade_root):
    ds = _ade(
        ade_root, metainfo=dict(classes=("sky", "wall")), pipeline=[dict(type="LoadAnnotations")]
    )
    label_map = ds.metainfo["label_map"]
    assert label_map[0] == 1 and label_map[2] == 0 and label_map[1] == 255
    assert len(label_map) == 150 and set(label_map.values()) == {0, 1, 255}
    assert ds.metainfo["palette"] == [[6, 230, 230], [120, 120, 120]]
    # on disk 1 (wall) -> reduced 0 -> mapped 1; 2 (building) -> 1 -> 255; 0 -> 255
    assert ds[0]["gt_seg_map"][0, ::2].tolist() == [255, 1, 255, 255]


def test_class_not_in_metainfo_is_an_error_with_hint(ade_root):
    with pytest.raises(DataError, match=r"\['skyy'\].*did you mean 'sky'") as err:
        _ade(ade_root, metainfo=dict(classes=("skyy", "wall")))
    assert "Valid classes: ('wall', 'building', 'sky', " in str(err.value)
    assert str(err.value).count("'") < 2 * 30  # the 150 names are cut short


def test_unknown_argument_names_closest(ade_root):
    with pytest.raises(Exception, match="did you mean 'data_prefix'"):
        _ade(ade_root, data_prefixes="x")


# ----------------------------------------------------------------------------- Cityscapes
def test_cityscapes_suffix_pairing_and_meta(tmp_path):
    stem = "aachen/aachen_000000_000019"
    _pair(
        tmp_path,
        stem,
        "leftImg8bit/val",
        "gtFine/val",
        "_leftImg8bit.png",
        "_gtFine_labelTrainIds.png",
    )
    ds = CityscapesDataset(
        data_root=str(tmp_path),
        data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"),
    )
    info = ds.get_data_info(0)
    assert len(ds) == 1
    assert info["seg_map_path"] == str(tmp_path / "gtFine/val" / f"{stem}_gtFine_labelTrainIds.png")
    meta = ds.metainfo
    assert len(meta["classes"]) == 19 == len(meta["palette"])
    assert meta["classes"][0] == "road" and meta["palette"][0] == [128, 64, 128]
    assert meta["classes"][-1] == "bicycle" and meta["palette"][-1] == [119, 11, 32]
    assert meta["reduce_zero_label"] is False


# ----------------------------------------------------------------------------- VOC
@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    for stem in ("2007_000032", "2007_000039", "2008_000001"):
        _pair(tmp_path, stem, "JPEGImages", "SegmentationClass", ".jpg", ".png")
        write_png(tmp_path / "SegmentationClassAug" / f"{stem}.png", MASK // 2)
    sets = tmp_path / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000039\n2007_000032\n")
    (sets / "aug.txt").write_text("2008_000001\n")
    return tmp_path


def _voc(root: Path, ann_file: str, masks: str = "SegmentationClass", **kw) -> dict:
    return dict(
        type="PascalVOCDataset",
        data_root=str(root),
        data_prefix=dict(img_path="JPEGImages", seg_map_path=masks),
        ann_file=ann_file,
        **kw,
    )


def test_voc_reads_split_file_and_meta(voc_root):
    ds = DATASETS.build(_voc(voc_root, "ImageSets/Segmentation/train.txt"))
    assert [Path(ds.get_data_info(i)["img_path"]).stem for i in range(len(ds))] == [
        "2007_000039",
        "2007_000032",
    ]
    meta = ds.metainfo
    assert len(meta["classes"]) == 21 and meta["classes"][0] == "background"
    assert meta["classes"][-1] == "tvmonitor" and meta["palette"][-1] == [0, 64, 128]
    assert meta["palette"][15] == [192, 128, 128]  # person


def test_voc_requires_ann_file_and_rejects_a_list(voc_root):
    with pytest.raises(TypeError, match="ann_file"):
        PascalVOCDataset(data_root=str(voc_root))
    with pytest.raises(TypeError, match="ConcatDataset"):
        PascalVOCDataset(ann_file=["a.txt", "b.txt"], data_root=str(voc_root))
    with pytest.raises(FileNotFoundError, match="ImageSets/Segmentation"):
        PascalVOCDataset(ann_file="ImageSets/Segmentation/val.txt", data_root=str(voc_root))


def test_voc_aug_through_concat_dataset(voc_root):
    cfg = dict(
        type="ConcatDataset",
        datasets=[
            _voc(voc_root, "ImageSets/Segmentation/train.txt"),
            _voc(voc_root, "ImageSets/Segmentation/aug.txt", "SegmentationClassAug"),
        ],
    )
    ds = DATASETS.build(cfg)
    assert isinstance(ds, ConcatDataset) and len(ds) == 3
    assert ds.metainfo["classes"][0] == "background"
    last = ds.get_data_info(-1)
    assert Path(last["img_path"]).stem == "2008_000001"
    assert "SegmentationClassAug" in last["seg_map_path"]
    ds.datasets[1].pipeline.transforms.append(lambda r: {**r, "seen": True})
    assert ds[2]["seen"] is True and "seen" not in ds[0]


def test_concat_dataset_passes_seeds_and_checks_metainfo(voc_root, seg_root):
    pipeline = [dict(type="LoadImageFromFile"), dict(type="RandomFlip", prob=0.5)]
    part = _voc(voc_root, "ImageSets/Segmentation/train.txt", pipeline=pipeline)
    ds = ConcatDataset([part, part])
    flips = [ds[(3, seed)]["flip"] for seed in range(20)]
    assert flips == [ds.datasets[1][(1, seed)]["flip"] for seed in range(20)]
    assert set(flips) == {False, True}
    with pytest.raises(IndexError):
        ds.get_data_info(4)
    other = _base(seg_root, metainfo=dict(classes=("a", "b")))
    with pytest.raises(ValueError, match="datasets\\[1\\].*'classes'"):
        ConcatDataset([DATASETS.build(part), other])


# ----------------------------------------------------------------------------- FootArch
def test_foot_arch_layout_and_both_names(tmp_path):
    for stem in ("0002", "0001"):
        _pair(tmp_path, stem, "images/train", "annotations/train", ".png", ".png")
    prefix = dict(img_path="images/train", seg_map_path="annotations/train")
    assert DATASETS.get("FeetArchDataset") is DATASETS.get("FootArchDataset") is FootArchDataset
    ds = DATASETS.build(
        dict(type="FeetArchDataset", data_root=str(tmp_path), data_prefix=prefix,
             pipeline=[dict(type="LoadAnnotations")])
    )  # fmt: skip
    assert ds.metainfo["classes"] == ("background", "foot arch")
    assert ds.metainfo["palette"] == [[0, 0, 0], [255, 0, 0]]
    assert Path(ds.get_data_info(0)["img_path"]).name == "0001.png"
    assert ds[0]["gt_seg_map"][0, ::2].tolist() == [0, 1, 2, 255]  # no zero-label reduction
