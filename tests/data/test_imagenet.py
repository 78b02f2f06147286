import pytest

from vistra.data.datasets.categories import IMAGENET_CATEGORIES
from vistra.data.datasets.imagenet import ImageNet

from .conftest import solid_rgb, write_png


@pytest.fixture
def imagenet_root(tmp_path):
    root = tmp_path / "imagenet"
    for wnid in ("n01", "n02"):
        write_png(root / "train" / wnid / f"{wnid}_1.JPEG.png", solid_rgb((1, 1, 1)))
    for i in range(3):
        write_png(root / "val" / f"val_{i}.png", solid_rgb((2, 2, 2)))
        write_png(root / "test" / f"test_{i}.png", solid_rgb((3, 3, 3)))
    (root / "meta").mkdir()
    (root / "meta" / "val.txt").write_text("val_0.png 1\nval_1.png 0\nval_2.png 1\n")
    return root


def test_default_classes_are_the_1000_imagenet_names():
    assert len(IMAGENET_CATEGORIES) == 1000
    assert IMAGENET_CATEGORIES[0] == "tench, Tinca tinca"
    assert IMAGENET_CATEGORIES[151] == "Chihuahua"
    assert IMAGENET_CATEGORIES[999] == "toilet tissue, toilet paper, bathroom tissue"
    assert ImageNet.METAINFO["classes"] is IMAGENET_CATEGORIES


def test_train_split_scans_class_folders(imagenet_root):
    ds = ImageNet(data_root=str(imagenet_root), split="train", metainfo=dict(classes=["a", "b"]))
    assert len(ds) == 2 and [ds.get_data_info(i)["gt_label"] for i in range(2)] == [0, 1]
    assert ds.ann_file == "" and ds.img_prefix.endswith("train")
    with pytest.raises(ValueError, match="found 2 class folders .* 1000 classes"):
        ImageNet(data_root=str(imagenet_root), split="train")


def test_val_split_uses_meta_val_txt(imagenet_root):
    ds = ImageNet(data_root=str(imagenet_root), split="val")
    assert ds.ann_file.endswith("meta/val.txt")
    assert [ds.get_data_info(i)["gt_label"] for i in range(3)] == [1, 0, 1]
    assert ds.get_data_info(0)["img_path"] == str(imagenet_root / "val" / "val_0.png")
    assert len(ds.CLASSES) == 1000


def test_test_split_has_no_labels(imagenet_root):
    ds = ImageNet(data_root=str(imagenet_root), split="test")
    assert len(ds) == 3 and "gt_label" not in ds.get_data_info(0)


def test_explicit_prefix_and_ann_file_win_over_split(imagenet_root):
    (imagenet_root / "meta" / "mine.txt").write_text("val_2.png 0\n")
    ds = ImageNet(
        data_root=str(imagenet_root), split="val", data_prefix="val", ann_file="meta/mine.txt"
    )
    assert len(ds) == 1


def test_bad_split_is_named():
    with pytest.raises(ValueError, match=r"split='valid' .*did you mean 'val'"):
        ImageNet(data_root="x", split="valid")
