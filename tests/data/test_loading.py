import numpy as np
import pytest
from PIL import Image

from vistra.data.errors import DataError
from vistra.data.transforms.loading import LoadAnnotations, LoadImageFromFile
from vistra.registry import TRANSFORMS

from .conftest import solid_rgb, write_png


def test_load_image_sets_img_and_shapes(tmp_path):
    path = write_png(tmp_path / "a.png", solid_rgb((1, 2, 3), 5, 7))
    out = TRANSFORMS.build(dict(type="LoadImageFromFile"))({"img_path": str(path)})
    assert out["img"].shape == (5, 7, 3) and out["img"][0, 0].tolist() == [3, 2, 1]
    assert out["img_shape"] == (5, 7) and out["ori_shape"] == (5, 7)
    out = LoadImageFromFile(to_float32=True, color_type="grayscale", imdecode_backend="pillow")(
        {"img_path": str(path)}
    )
    assert out["img"].dtype == np.float32 and out["img"].shape == (5, 7)


def test_load_image_errors_and_ignore_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.png"):
        LoadImageFromFile()({"img_path": str(tmp_path / "gone.png")})
    assert LoadImageFromFile(ignore_empty=True)({"img_path": str(tmp_path / "gone.png")}) is None
    with pytest.raises(KeyError, match="img_path"):
        LoadImageFromFile()({})
    with pytest.raises(ValueError, match="imdecode_backend"):
        LoadImageFromFile(imdecode_backend="opencv")
    with pytest.raises(ValueError, match="only local files"):
        LoadImageFromFile(backend_args=dict(backend="petrel"))
    LoadImageFromFile(file_client_args=dict(backend="disk"))  # MMCV's old spelling


@pytest.fixture
def label_png(tmp_path):
    return write_png(tmp_path / "seg.png", np.array([[0, 1, 2], [255, 3, 0]], np.uint8))


def test_load_annotations_reads_labels_and_registers_seg_field(label_png):
    out = LoadAnnotations()({"seg_map_path": str(label_png), "seg_fields": []})
    assert out["gt_seg_map"].tolist() == [[0, 1, 2], [255, 3, 0]]
    assert out["seg_fields"] == ["gt_seg_map"]
    assert LoadAnnotations()({"seg_map_path": str(label_png)})["seg_fields"] == ["gt_seg_map"]


def test_reduce_zero_label_from_transform_or_dataset(label_png):
    reduced = [[255, 0, 1], [255, 2, 255]]
    assert (
        LoadAnnotations(reduce_zero_label=True)({"seg_map_path": str(label_png)})[
            "gt_seg_map"
        ].tolist()
        == reduced
    )
    out = LoadAnnotations()({"seg_map_path": str(label_png), "reduce_zero_label": True})
    assert out["gt_seg_map"].tolist() == reduced
    with pytest.raises(DataError, match=r"disagrees.*seg.png.*set it in one place: on the data"):
        LoadAnnotations(reduce_zero_label=False)(
            {"seg_map_path": str(label_png), "reduce_zero_label": True}
        )


def test_colour_mask_is_a_data_error_naming_the_file(tmp_path):
    colour = np.zeros((4, 5, 3), np.uint8)
    colour[1:3, 1:3] = (255, 0, 0)  # a red object drawn on black
    path = write_png(tmp_path / "ann" / "red.png", colour)
    with pytest.raises(DataError, match=r"mask '.*red.png' is a colour image \(3 channels") as err:
        LoadAnnotations()({"seg_map_path": str(path)})  # was RuntimeError at the first step
    assert "single-channel PNGs of class indices" in str(err.value)
    with pytest.raises(DataError, match="imdecode_backend='pillow'"):
        LoadAnnotations(imdecode_backend="cv2")({"seg_map_path": str(path)})


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA"])
def test_grey_mask_saved_with_several_channels_gives_one(tmp_path, mode):
    labels = np.array([[0, 1, 2], [255, 1, 0]], np.uint8)
    path = tmp_path / f"grey_{mode}.png"
    Image.fromarray(labels).convert(mode).save(path)
    out = LoadAnnotations()({"seg_map_path": str(path)})
    assert out["gt_seg_map"].shape == (2, 3) and out["gt_seg_map"].tolist() == labels.tolist()


def test_label_map_is_applied_simultaneously(label_png):
    out = LoadAnnotations()({"seg_map_path": str(label_png), "label_map": {1: 2, 2: 1, 3: 255}})
    assert out["gt_seg_map"].tolist() == [[0, 2, 1], [255, 255, 0]]


def test_missing_label_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="lbl.png"):
        LoadAnnotations()({"seg_map_path": str(tmp_path / "lbl.png")})
