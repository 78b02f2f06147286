"""Dataset converters: Cityscapes labelIds -> labelTrainIds and split lists; VOC aug lists."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistra.data.errors import DataError

from .conftest import write_png

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "dataset_converters"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"converter_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so that worker processes can find its functions
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cityscapes():
    return _load("cityscapes")


@pytest.fixture(scope="module")
def voc_aug():
    return _load("voc_aug")


# ----------------------------------------------------------------------------- Cityscapes
# every official label id, plus values outside the table (34, 200, 255)
IDS = np.array([list(range(0, 17)) + [34], list(range(17, 34)) + [255], [200] * 17 + [0]], np.uint8)
# official trainIds (cityscapesscripts labels.py) for the ids above
TRAIN_IDS = [
    [255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 255],
    [5, 255, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18, 255],
    [255] * 18,
]


@pytest.fixture
def cityscapes_root(tmp_path: Path) -> Path:
    gt = tmp_path / "gtFine"
    samples = {
        "train": [
            "aachen/aachen_000001_000019",
            "aachen/aachen_000000_000019",
            "bonn/bonn_000000_000001",
        ],
        "val": ["lindau/lindau_000000_000019"],
        "test": ["berlin/berlin_000000_000019"],
    }
    for split, stems in samples.items():
        for stem in stems:
            write_png(gt / split / f"{stem}_gtFine_labelIds.png", IDS)
            write_png(gt / split / f"{stem}_gtFine_color.png", np.zeros((3, 18, 3), np.uint8))
    return tmp_path


def test_label_ids_map_to_official_train_ids(cityscapes):
    out = cityscapes.label_ids_to_train_ids(IDS)
    assert out.dtype == np.uint8 and out.tolist() == TRAIN_IDS
    # out-of-table values in wider arrays (16-bit PNGs, negative ids) are ignored too
    wide = cityscapes.label_ids_to_train_ids(np.array([[-1, 7, 300, 33]], np.int32))
    assert wide.tolist() == [[255, 0, 255, 18]]


def test_convert_writes_train_id_pngs_and_sorted_split_lists(cityscapes, cityscapes_root, tmp_path):
    out_dir = tmp_path / "lists"
    counts = cityscapes.convert_cityscapes(str(cityscapes_root), out_dir=str(out_dir))
    assert counts == {"train": 3, "val": 1, "test": 1}
    written = cityscapes_root / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png"
    assert np.asarray(Image.open(written)).tolist() == TRAIN_IDS
    assert (out_dir / "train.txt").read_text().splitlines() == [
        "aachen/aachen_000000_000019",
        "aachen/aachen_000001_000019",
        "bonn/bonn_000000_000001",
    ]
    assert (out_dir / "val.txt").read_text() == "lindau/lindau_000000_000019\n"
    assert (out_dir / "test.txt").read_text() == "berlin/berlin_000000_000019\n"


def test_cli_defaults_lists_into_the_dataset_and_uses_processes(
    cityscapes, cityscapes_root, capsys
):
    assert cityscapes.main([str(cityscapes_root), "--nproc", "2"]) == 0
    assert (cityscapes_root / "val.txt").is_file()
    assert len(list(cityscapes_root.rglob("*_gtFine_labelTrainIds.png"))) == 5
    assert "train.txt: 3" in capsys.readouterr().out


def test_missing_gt_dir_and_colour_file_are_clear_errors(cityscapes, tmp_path, capsys):
    assert cityscapes.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "gtFine" in err and "{train,val,test}/<city>/*_gtFine_labelIds.png" in err
    bad = write_png(tmp_path / "x_gtFine_labelIds.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataError, match="single-channel"):
        cityscapes.convert_label_file(str(bad))


# ----------------------------------------------------------------------------- VOC aug
@pytest.fixture
def voc_dirs(tmp_path: Path) -> tuple[Path, Path]:
    devkit, aug = tmp_path / "VOCdevkit", tmp_path / "VOCaug"
    sets = devkit / "VOC2012" / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("t1\nt2\n")
    (sets / "val.txt").write_text("v1\n")
    (aug / "dataset" / "cls").mkdir(parents=True)
    (aug / "dataset" / "train.txt").write_text("s2\nt1\nv1\n")
    (aug / "dataset" / "val.txt").write_text("s1\n")
    return devkit, aug


def test_aug_lists_follow_mmseg_set_rules(voc_aug, voc_dirs):
    devkit, aug = voc_dirs
    trainaug, aug_only = voc_aug.aug_lists(str(devkit), str(aug))
    assert trainaug == ["s1", "s2", "t1", "t2"]  # VOC train + SBD, less VOC val
    assert aug_only == ["s1", "s2"]  # SBD less VOC train and val


def test_convert_writes_lists_when_length_check_is_off(voc_aug, voc_dirs):
    devkit, aug = voc_dirs
    counts = voc_aug.convert_voc_aug(str(devkit), str(aug), check_len=False)
    assert counts == {"masks": 0, "trainaug": 4, "aug": 2}
    sets = devkit / "VOC2012" / "ImageSets" / "Segmentation"
    assert (sets / "trainaug.txt").read_text() == "s1\ns2\nt1\nt2\n"
    assert (sets / "aug.txt").read_text() == "s1\ns2\n"
    assert (devkit / "VOC2012" / "SegmentationClassAug").is_dir()


def test_length_check_fails_before_writing(voc_aug, voc_dirs, capsys):
    devkit, aug = voc_dirs
    assert voc_aug.main([str(devkit), str(aug)]) == 2
    err = capsys.readouterr().err
    assert "trainaug.txt would list 4 images (expected 10582)" in err and "--no-len-check" in err
    assert not (devkit / "VOC2012" / "ImageSets" / "Segmentation" / "trainaug.txt").exists()
    assert voc_aug.main([str(devkit), str(aug), "--no-len-check"]) == 0


def test_missing_split_file_is_named(voc_aug, voc_dirs):
    devkit, aug = voc_dirs
    (aug / "dataset" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match="SBD split list .*dataset/val.txt"):
        voc_aug.aug_lists(str(devkit), str(aug))


def test_mat_masks_without_scipy_fail_clearly(voc_aug, voc_dirs):
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("scipy is installed: the missing-scipy message cannot show")
    devkit, aug = voc_dirs
    (aug / "dataset" / "cls" / "s1.mat").write_bytes(b"MATLAB 5.0")
    with pytest.raises(DataError, match="needs scipy.*pip install scipy"):
        voc_aug.convert_masks(str(aug), str(devkit / "out"))


def test_mat_masks_convert_with_scipy(voc_aug, voc_dirs):
    scipy_io = pytest.importorskip("scipy.io")
    devkit, aug = voc_dirs
    mask = np.array([[0, 15], [255, 1]], np.uint8)
    gtcls = np.zeros((1,), dtype=[("Segmentation", object)])
    gtcls[0]["Segmentation"] = mask
    scipy_io.savemat(str(aug / "dataset" / "cls" / "s1.mat"), {"GTcls": gtcls})
    assert voc_aug.convert_masks(str(aug), str(devkit / "out")) == 1
    assert np.asarray(Image.open(devkit / "out" / "s1.png")).tolist() == mask.tolist()
