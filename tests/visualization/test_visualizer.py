import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from vistra.data.structures import DataSample, PixelData
from vistra.registry import VISUALIZERS, RegistryError
from vistra.visualization import Visualizer
from vistra.visualization.drawing import generate_palette, resize_image


def _image(h=8, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "name", ["Visualizer", "UniversalVisualizer", "SegLocalVisualizer", "mmseg.SegLocalVisualizer"]
)
def test_config_names_build(name, tmp_path):
    vis = VISUALIZERS.build(
        {"type": name, "vis_backends": [{"type": "LocalVisBackend"}]},
        default_args={"save_dir": str(tmp_path)},
    )
    assert isinstance(vis, Visualizer)
    assert Visualizer.get_current_instance() is vis


def test_backends_write_under_vis_data_and_fan_out(tmp_path):
    vis = Visualizer(
        vis_backends=[
            {"type": "LocalVisBackend"},
            {"type": "LocalVisBackend", "name": "copy", "save_dir": str(tmp_path / "other")},
        ],
        save_dir=str(tmp_path),
    )
    vis.add_scalars({"loss": 1.5}, step=3)
    vis.add_config("x = 1\n")
    vis.close()
    line = (tmp_path / "vis_data" / "scalars.json").read_text()
    assert json.loads(line) == {"loss": 1.5, "step": 3}
    assert (tmp_path / "other" / "scalars.json").read_text() == line
    assert (tmp_path / "vis_data" / "config.py").read_text() == "x = 1\n"
    assert vis.get_backend("copy") is not None


def test_backend_needing_save_dir_is_skipped_without_one(capsys):
    vis = Visualizer(vis_backends=[{"type": "LocalVisBackend"}])
    assert vis.get_backend("LocalVisBackend") is None
    assert "save_dir" in capsys.readouterr().err


def test_unknown_backend_in_visualizer_suggests(tmp_path):
    with pytest.raises(RegistryError, match="LocalVisBackend"):
        Visualizer(vis_backends=[{"type": "LocalVisBackends"}], save_dir=str(tmp_path))


def test_duplicate_backend_names_fail(tmp_path):
    with pytest.raises(ValueError, match="LocalVisBackend"):
        Visualizer(vis_backends=[{"type": "LocalVisBackend"}] * 2, save_dir=str(tmp_path))


def test_unknown_constructor_argument_is_named(tmp_path):
    with pytest.raises(RegistryError, match="alpha"):
        VISUALIZERS.build({"type": "SegLocalVisualizer", "alhpa": 0.5})


def _cls_sample():
    sample = DataSample().set_gt_label(1).set_pred_label(2)
    return sample.set_pred_score(torch.tensor([0.1, 0.2, 0.7]))


def test_classification_drawing_enlarges_and_writes_text(tmp_path):
    vis = Visualizer()
    vis.dataset_meta = {"classes": ["cat", "dog", "bird"]}
    image = _image(32, 32)
    out_file = tmp_path / "sub" / "cls.png"
    drawn = vis.add_datasample("cls", image, _cls_sample(), out_file=str(out_file))
    assert drawn.shape[0] > 32 and drawn.shape[1] > 32
    plain = resize_image(image, short_edge=drawn.shape[0])
    assert plain.shape == drawn.shape
    assert not np.array_equal(plain, drawn)  # text was drawn on it
    np.testing.assert_array_equal(np.asarray(Image.open(out_file)), drawn)


def test_classification_text_uses_class_names_and_scores():
    from vistra.visualization.visualizer import classification_lines

    sample = _cls_sample()
    assert classification_lines(sample, ["cat", "dog", "bird"]) == ["GT: dog", "Pred: bird (0.70)"]
    assert classification_lines(sample, None) == ["GT: 1", "Pred: 2 (0.70)"]
    assert classification_lines(sample, None, draw_gt=False, draw_score=False) == ["Pred: 2"]


def test_classification_text_changes_the_drawing():
    vis = Visualizer()
    image = _image(32, 32)
    with_gt = vis.add_datasample("a", image, DataSample().set_gt_label(0), draw_pred=False)
    other_gt = vis.add_datasample("a", image, DataSample().set_gt_label(7), draw_pred=False)
    assert not np.array_equal(with_gt, other_gt)


def test_drawing_goes_to_backends_without_out_file(tmp_path):
    vis = Visualizer(vis_backends=[{"type": "LocalVisBackend"}], save_dir=str(tmp_path))
    drawn = vis.add_datasample("val_img", _image(), _cls_sample(), step=5)
    saved = np.asarray(Image.open(tmp_path / "vis_data" / "vis_image" / "val_img_5.png"))
    np.testing.assert_array_equal(saved, drawn)


def _seg_sample(h=8, w=10):
    gt = np.zeros((h, w), np.int64)
    gt[:, w // 2 :] = 1
    gt[0, 0] = 255  # ignored pixel
    pred = np.full((h, w), 2, np.int64)
    pred[1, 1] = 255
    sample = DataSample()
    sample.gt_sem_seg = PixelData(torch.from_numpy(gt)[None])
    sample.pred_sem_seg = PixelData(torch.from_numpy(pred)[None])
    return sample


def test_segmentation_overlay_blends_palette_and_leaves_ignored_pixels(tmp_path):
    palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    vis = Visualizer(alpha=0.6, classes=["a", "b", "c"], palette=palette)
    image = _image()
    out_file = tmp_path / "seg.png"
    drawn = vis.add_datasample(
        "seg", image, _seg_sample(), with_labels=False, out_file=str(out_file)
    )
    assert drawn.shape == (8, 30, 3)
    np.testing.assert_array_equal(drawn[:, :10], image)
    gt_panel, pred_panel = drawn[:, 10:20], drawn[:, 20:]

    def blend(pixel, colour):
        return np.round(0.4 * pixel.astype(float) + 0.6 * np.array(colour)).astype(np.uint8)

    np.testing.assert_array_equal(gt_panel[3, 2], blend(image[3, 2], palette[0]))
    np.testing.assert_array_equal(gt_panel[3, 7], blend(image[3, 7], palette[1]))
    np.testing.assert_array_equal(pred_panel[5, 5], blend(image[5, 5], palette[2]))
    np.testing.assert_array_equal(gt_panel[0, 0], image[0, 0])  # ignore_index 255 untouched
    np.testing.assert_array_equal(pred_panel[1, 1], image[1, 1])
    np.testing.assert_array_equal(np.asarray(Image.open(out_file)), drawn)


def test_segmentation_without_meta_uses_deterministic_palette():
    vis = Visualizer(alpha=1.0)
    image = _image()
    drawn = vis.add_datasample("seg", image, _seg_sample(), with_labels=False, draw_gt=False)
    assert drawn.shape == (8, 20, 3)  # image | prediction
    np.testing.assert_array_equal(drawn[5, 15], generate_palette(256)[2])
    again = Visualizer(alpha=1.0).add_datasample(
        "s", image, _seg_sample(), with_labels=False, draw_gt=False
    )
    np.testing.assert_array_equal(drawn, again)


def test_segmentation_labels_write_class_names():
    vis = Visualizer(classes=["a", "b", "c"])
    image = _image(64, 64)
    sample = _seg_sample(64, 64)
    plain = vis.add_datasample("seg", image, sample, with_labels=False)
    named = vis.add_datasample("seg", image, sample, with_labels=True)
    np.testing.assert_array_equal(plain[:, :64], named[:, :64])  # the image panel has no text
    assert not np.array_equal(plain[:, 64:], named[:, 64:])


def test_segmentation_map_of_another_size_is_resized_nearest():
    vis = Visualizer(alpha=1.0, palette=[[10, 20, 30], [40, 50, 60]])
    sample = DataSample()
    sample.pred_sem_seg = PixelData(torch.tensor([[[0, 1]]]))  # 1 x 2 map for a 4 x 4 image
    drawn = vis.add_datasample("seg", _image(4, 4), sample, with_labels=False)
    np.testing.assert_array_equal(drawn[3, 4], [10, 20, 30])
    np.testing.assert_array_equal(drawn[3, 7], [40, 50, 60])


def test_show_without_display_warns_once_and_continues(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    vis = Visualizer()
    for _ in range(2):
        vis.add_datasample(
            "x", _image(), _cls_sample(), show=True, out_file=str(tmp_path / "x.png")
        )
    err = capsys.readouterr().err
    assert err.count("warning: cannot show images") == 1
    assert os.path.exists(tmp_path / "x.png")


def test_non_uint8_image_is_refused():
    with pytest.raises(TypeError, match="uint8"):
        Visualizer().add_datasample("x", np.zeros((4, 4, 3), np.float32))


def test_show_with_non_interactive_backend_warns(monkeypatch, capsys):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("DISPLAY", ":99")
    vis = Visualizer()
    vis.add_datasample("x", _image(), show=True)
    assert "'agg' cannot open windows" in capsys.readouterr().err


def test_visualize_cls_resize_options():
    vis = Visualizer(classes=["cat", "dog", "bird"])
    image = _image(20, 40)
    assert vis.visualize_cls(image, _cls_sample(), resize=100).shape == (100, 200, 3)
    assert vis.visualize_cls(image, _cls_sample(), rescale_factor=3).shape == (60, 120, 3)
    assert vis.visualize_cls(image, _cls_sample()).shape == (224, 448, 3)


def test_text_box_is_kept_inside_the_image():
    from vistra.visualization.drawing import draw_text_block

    blank = np.zeros((40, 60, 3), np.uint8)
    drawn = draw_text_block(blank, ["road"], origin=(59, 39), font_size=10, box_color=(0, 0, 0))
    assert drawn[:, 30:].any()  # white text pushed back into the bottom-right corner
