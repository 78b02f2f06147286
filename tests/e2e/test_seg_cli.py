"""End-to-end segmentation through the real CLI: train, test --out DIR, --show-dir."""

from __future__ import annotations

import json

import numpy as np
import pytest
from e2e_support import REPO, run_cli, run_dirs
from PIL import Image

pytestmark = pytest.mark.slow

OVERRIDES = [
    "train_cfg.max_iters=4",
    "train_cfg.val_interval=4",
    "train_dataloader.batch_size=4",
    "train_dataloader.dataset.num_samples=8",
    "val_dataloader.dataset.num_samples=6",
    "test_dataloader.dataset.num_samples=6",
    "test_dataloader.batch_size=4",
    "default_hooks.checkpoint.interval=4",
    "default_hooks.logger.interval=2",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    cfg = REPO / "configs" / "quickstart" / "seg_shapes.py"
    result = run_cli(
        "train", cfg, "--work-dir", root / "work", "--cfg-options", *OVERRIDES, cwd=root
    )
    assert result.returncode == 0, result.output
    return cfg, root / "work" / "iter_4.pth", root


def test_training_logs_iou_metrics(trained):
    _, ckpt, root = trained
    assert ckpt.exists()
    (run,) = run_dirs(root / "work")
    log = (run / f"{run.name}.log").read_text()
    assert "Iter(val) [1/1]" in log and "mIoU:" in log and "aAcc:" in log
    assert "decode.loss_ce" in log and "decode.acc_seg" in log


def test_out_dir_writes_index_pngs_and_metrics_json_has_per_class(trained, tmp_path):
    cfg, ckpt, _ = trained
    out = tmp_path / "preds"
    result = run_cli(
        "test",
        cfg,
        ckpt,
        "--work-dir",
        tmp_path / "t",
        "--out",
        out,
        "--cfg-options",
        *OVERRIDES,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.output
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 6
    mask = np.asarray(Image.open(pngs[0]))
    assert mask.shape == (64, 64) and mask.max() <= 6  # class indices of 7 classes
    (run,) = run_dirs(tmp_path / "t")
    metrics = json.loads((run / f"{run.name}.json").read_text())
    assert {"aAcc", "mIoU", "mAcc"} <= set(metrics)
    per_class_iou = metrics["per_class"]["IoU"]
    assert len(per_class_iou) == 7 and "background" in per_class_iou


def test_show_dir_writes_overlays(trained, tmp_path):
    cfg, ckpt, _ = trained
    vis = tmp_path / "vis"
    result = run_cli(
        "test",
        cfg,
        ckpt,
        "--work-dir",
        tmp_path / "t",
        "--show-dir",
        vis,
        "--interval",
        "2",
        "--cfg-options",
        *OVERRIDES,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.output
    images = sorted(vis.glob("*.png"))
    assert len(images) == 3  # samples 0, 2, 4 of 6
    assert (
        Image.open(images[0]).size[0] == 3 * Image.open(images[0]).size[1]
    )  # image | gt | prediction


def test_out_dir_needs_a_segmentation_evaluator(tmp_path):
    from e2e_support import TINY_CLS

    cfg = tmp_path / "cls.py"
    cfg.write_text(TINY_CLS.format(num_classes=3, max_epochs=1, num_workers=0))
    result = run_cli("test", cfg, tmp_path / "missing.pth", "--out", tmp_path / "dir", cwd=tmp_path)
    assert result.returncode == 2
    assert "needs a segmentation test_evaluator (IoUMetric)" in result.stderr
