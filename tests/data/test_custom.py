import numpy as np
import pytest

from vistra.data.datasets.custom import CustomDataset
from vistra.registry import DATASETS

from .conftest import solid_rgb, write_png

LOAD = [dict(type="LoadImageFromFile")]


def test_class_folders_give_sorted_labels_and_class_names(class_folders):
    ds = CustomDataset(data_prefix=str(class_folders))
    assert ds.CLASSES == ("cat", "dog")
    assert len(ds) == 5
    infos = [ds.get_data_info(i) for i in range(5)]
    assert [i["gt_label"] for i in infos] == [0, 0, 1, 1, 1]
    assert infos[2]["img_path"] == str(class_folders / "dog" / "sub" / "d0.png")
    assert ds.folder_to_idx == {"cat": 0, "dog": 1}


def test_data_root_plus_prefix_and_pipeline(class_folders):
    ds = DATASETS.build(
        dict(
            type="CustomDataset",
            data_root=str(class_folders.parent),
            data_prefix="imgs",
            pipeline=LOAD,
        )
    )
    sample = ds[4]
    assert sample["img"][0, 0].tolist() == [255, 0, 0]  # blue dog in BGR
    assert sample["gt_label"] == 1 and sample["img_shape"] == (6, 8)


def test_metainfo_overrides_class_names_but_must_match_the_folder_count(class_folders):
    ds = CustomDataset(data_prefix=str(class_folders), metainfo=dict(classes=["felis", "canis"]))
    assert ds.CLASSES == ("felis", "canis")
    with pytest.raises(ValueError, match="found 2 class folders .* 3 classes"):
        CustomDataset(data_prefix=str(class_folders), metainfo=dict(classes=["a", "b", "c"]))


def test_without_labels_every_image_below_the_prefix(class_folders):
    ds = CustomDataset(data_prefix=str(class_folders), with_label=False)
    assert len(ds) == 5 and "gt_label" not in ds.get_data_info(0)


def test_extensions_filter(class_folders):
    write_png(class_folders / "cat" / "x.bmp", solid_rgb((1, 2, 3)))
    assert len(CustomDataset(data_prefix=str(class_folders))) == 6
    with pytest.warns(UserWarning, match="no image with extension .bmp in class folder.* dog"):
        assert len(CustomDataset(data_prefix=str(class_folders), extensions=(".BMP",))) == 1


def test_ann_file_with_labels(class_folders, tmp_path):
    ann = tmp_path / "train.txt"
    ann.write_text("cat/c0.png 1\ndog/sub/d2.png 0\n\n")
    ds = CustomDataset(
        data_root=str(tmp_path), data_prefix="imgs", ann_file="train.txt", pipeline=LOAD
    )
    assert ds.CLASSES is None
    assert [ds.get_data_info(i)["gt_label"] for i in range(2)] == [1, 0]
    assert ds[1]["img"][0, 0].tolist() == [255, 0, 0]


def test_ann_file_paths_with_spaces_and_without_labels(tmp_path):
    write_png(tmp_path / "a b.png", solid_rgb((0, 0, 0)))
    (tmp_path / "l.txt").write_text("a b.png 3\n")
    assert (
        CustomDataset(data_prefix=str(tmp_path), ann_file=str(tmp_path / "l.txt"))
        .get_data_info(0)["img_path"]
        .endswith("a b.png")
    )
    (tmp_path / "u.txt").write_text("a b.png\n")
    ds = CustomDataset(
        data_prefix=str(tmp_path), ann_file=str(tmp_path / "u.txt"), with_label=False
    )
    assert ds.get_data_info(0)["img_path"].endswith(
        "a b.png"
    ) and "gt_label" not in ds.get_data_info(0)


def test_bad_ann_line_names_file_and_line(tmp_path):
    (tmp_path / "a.txt").write_text("x.png 1\ny.png\n")
    with pytest.raises(ValueError, match=r"a.txt:2: cannot parse 'y.png'"):
        CustomDataset(data_prefix=str(tmp_path), ann_file=str(tmp_path / "a.txt"))


def test_missing_folder_missing_ann_file_and_empty_folder_errors(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"'.*nowhere' does not exist; expected <prefix>/<class_name>"
    ):
        CustomDataset(data_prefix=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"annotation file not found: '.*train.txt'"):
        CustomDataset(data_root=str(tmp_path), ann_file="train.txt")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="found no image"):
        CustomDataset(data_prefix=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="needs one of"):
        CustomDataset()


def test_empty_class_folder_warns(class_folders):
    (class_folders / "eel").mkdir()
    with pytest.warns(UserWarning, match="eel"):
        ds = CustomDataset(data_prefix=str(class_folders))
    assert ds.CLASSES == ("cat", "dog", "eel")


def test_missing_and_corrupt_images_name_the_file(class_folders):
    ds = CustomDataset(data_prefix=str(class_folders), pipeline=LOAD)
    (class_folders / "cat" / "c1.png").unlink()
    with pytest.raises(FileNotFoundError, match="c1.png"):
        ds[1]
    (class_folders / "dog" / "sub" / "d0.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="cannot decode image .*d0.png"):
        ds[2]


def test_ignore_empty_drops_unreadable_images_and_training_refetches(class_folders):
    ds = CustomDataset(
        data_prefix=str(class_folders), pipeline=[dict(type="LoadImageFromFile", ignore_empty=True)]
    )
    (class_folders / "cat" / "c0.png").unlink()
    np.random.seed(0)
    out = ds[0]
    assert out["img_path"] != str(class_folders / "cat" / "c0.png")
