"""``vistra browse-dataset`` / ``tools/analysis_tools/browse_dataset.py``: the PNGs it writes
for a classification, a segmentation and a multi-view (self-supervised) pipeline, their
layout (exact sizes), what the panels show, and the headless rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from e2e_support import REPO
from PIL import Image

from vistra.analysis import browse
from vistra.cli.browse_dataset import main

CLS = REPO / "configs" / "quickstart" / "cls_shapes.py"
SEG = REPO / "configs" / "quickstart" / "seg_shapes.py"
MAE = REPO / "configs" / "quickstart" / "mae_shapes.py"
SMALL = ["train_dataloader.dataset.num_samples=6"]
T, L, G = browse.TITLE_HEIGHT, browse.LABEL_HEIGHT, browse.GAP


def test_upstream_script_has_both_packages_flags():
    script = REPO / "tools" / "analysis_tools" / "browse_dataset.py"
    done = subprocess.run([sys.executable, str(script), "-h"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for flag in ("--output-dir", "--phase", "--show-number", "--show-interval", "--mode",
                 "--rescale-factor", "--channel-order", "--not-show", "--cfg-options"):  # fmt: skip
        assert flag in done.stdout


def pngs(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def test_pipeline_mode_one_panel_per_transform(tmp_path):
    out = tmp_path / "out"
    # a flip that always happens, at 1x scale: the layout is exact and the flip visible
    argv = [str(CLS), "-o", str(out), "-n", "3", "-m", "pipeline", "-r", "1", "--cfg-options"]
    assert main([*argv, *SMALL, "train_dataloader.dataset.pipeline.0.prob=1.0"]) == 0
    images = pngs(out)
    assert len(images) == 3 and sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "2.png"]
    for image in images:  # Original | RandomFlip | PackInputs, 64 px each, the label under
        assert image.shape == (T + 64 + L, 3 * 64 + 2 * G, 3)
        original = image[T : T + 64, :64]
        flipped = image[T : T + 64, 64 + G : 128 + G]
        packed = image[T : T + 64, 128 + 2 * G :]
        np.testing.assert_array_equal(flipped, original[:, ::-1])
        np.testing.assert_array_equal(packed, flipped)
        assert (image[-L:] < 128).any()  # the label's dark text on the white strip


def test_original_and_concat_modes_classification(tmp_path):
    for mode, columns in (("original", 1), ("concat", 2), ("transformed", 1)):
        out = tmp_path / mode
        assert main([str(CLS), "-o", str(out), "-n", "2", "-m", mode, "--cfg-options", *SMALL]) == 0
        images = pngs(out)
        assert len(images) == 2
        # 64 px images are enlarged to 128 px tiles when no rescale factor is given
        tile = browse.MIN_TILE
        assert images[0].shape == (T + tile + L, columns * tile + (columns - 1) * G, 3)


def test_segmentation_overlay_and_mmseg_flags(tmp_path):
    from vistra.data.datasets.shapes import PALETTE

    out = tmp_path / "seg"
    argv = [str(SEG), "--output-dir", str(out), "--not-show", "-n", "2", "-r", "1"]
    assert main([*argv, "--cfg-options", *SMALL]) == 0
    images = pngs(out)
    assert len(images) == 2
    for image in images:  # one column: the image, then the ground truth over it
        assert image.shape == (T + 64 + G + 64, 64, 3)
        plain = image[T : T + 64].astype(int)
        overlay = image[T + 64 + G :].astype(int)
        assert (np.abs(plain - overlay).sum(axis=2) > 30).any()
        # most pixels are the 50/50 blend with a class colour (the rest: the region names)
        blend = np.round(0.5 * plain + 0.5 * np.array(PALETTE[:7])[:, None, None])
        hits = (np.abs(blend - overlay[None]).max(axis=3) <= 1).any(axis=0)
        assert hits.mean() > 0.6


def test_multi_view_pipeline_a_tile_per_view(tmp_path):
    config = tmp_path / "two_views.py"
    config.write_text(
        f"_base_ = [{str(MAE)!r}]\n"
        "train_pipeline = [dict(type='MultiView', num_views=2, transforms=[[\n"
        "    dict(type='RandomResizedCrop', scale=32, backend='pillow')]]),\n"
        "    dict(type='PackInputs')]\n"
        "train_dataloader = dict(dataset=dict(num_samples=2, pipeline=train_pipeline))\n"
    )
    out = tmp_path / "views"
    assert main([str(config), "-o", str(out), "-m", "pipeline", "-r", "2"]) == 0
    images = pngs(out)
    assert len(images) == 2
    # Original (one 128 px tile) | MultiView (two 64 px views) | PackInputs (the same two)
    assert images[0].shape == (T + 64 + G + 64 + L, 128 + 64 + 64 + 2 * G, 3)
    views = images[0][T : T + 64 + G + 64, 128 + G : 128 + G + 64]
    packed = images[0][T : T + 64 + G + 64, 128 + 2 * G + 64 :]
    np.testing.assert_array_equal(views, packed)
    assert not np.array_equal(views[:64], views[64 + G :])  # two different random crops


def test_headless_without_output_dir_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main([str(CLS), "-n", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no DISPLAY" in err and "--output-dir" in err
    # --show with a folder: the images are written, the window is skipped with one warning
    assert main([str(CLS), "-n", "2", "--show", "-o", str(tmp_path), "--cfg-options", *SMALL]) == 0
    assert len(pngs(tmp_path)) == 2
    assert capsys.readouterr().err.count("cannot show images") <= 1
    assert main([str(CLS), "-o", str(tmp_path), "-p", "train", "-n", "0"]) == 2
    assert "--show-number must be > 0" in capsys.readouterr().err


def test_missing_phase_names_what_the_config_has(tmp_path, capsys):
    assert main([str(MAE), "-o", str(tmp_path), "-p", "val"]) == 2
    err = capsys.readouterr().err
    assert "no val_dataloader.dataset" in err and "train_dataloader" in err


def test_to_rgb_handles_what_pipelines_hold():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in BGR
    assert browse.to_rgb(bgr, bgr=True)[0, 0].tolist() == [0, 0, 200]
    chw = torch.from_numpy(bgr.transpose(2, 0, 1).copy())
    assert browse.to_rgb(chw, bgr=False).shape == (4, 5, 3)
    normalised = np.full((4, 5, 3), -1.0)
    normalised[0, 0] = 2.0
    drawn = browse.to_rgb(normalised, bgr=False)
    assert drawn.dtype == np.uint8 and drawn.max() == 255 and drawn.min() == 0
    assert browse.to_rgb(np.zeros((2, 3, 4, 5, 6)), bgr=False) is None  # a clip: no image


def test_vistra_browse_dataset_command(tmp_path, capsys):
    from vistra.cli.main import main as vistra

    args = ["-o", str(tmp_path), "-n", "1", "-p", "test"]
    args += ["--cfg-options", "test_dataloader.dataset.num_samples=2"]
    assert vistra(["browse-dataset", str(CLS), *args]) == 0
    assert len(pngs(tmp_path)) == 1
    assert "1 samples of test_dataloader.dataset" in capsys.readouterr().out


def test_masked_image_modelling_mask_is_shaded(tmp_path):
    config = tmp_path / "simmim.py"
    config.write_text(
        f"_base_ = [{str(MAE)!r}]\n"
        "train_pipeline = [dict(type='SimMIMMaskGenerator', input_size=64, mask_patch_size=16,\n"
        "    model_patch_size=8, mask_ratio=0.5), dict(type='PackInputs')]\n"
        "train_dataloader = dict(dataset=dict(num_samples=1, pipeline=train_pipeline))\n"
    )
    assert main([str(config), "-o", str(tmp_path / "out"), "-r", "1"]) == 0
    (image,) = pngs(tmp_path / "out")
    assert image.shape == (T + 64 + G + 64 + L, 64, 3)  # the image, then the shaded copy
    plain = image[T : T + 64].astype(int)
    shaded = image[T + 64 + G : T + 128 + G].astype(int)
    changed = np.abs(plain - shaded).max(axis=2) > 0
    # half of the 16 px blocks are masked: whole blocks change, the others stay as they are
    blocks = changed.reshape(4, 16, 4, 16).mean(axis=(1, 3))
    assert sorted(np.round(blocks.ravel()).tolist()) == [0.0] * 8 + [1.0] * 8
