"""0.x command lines (MMSegmentation/MMClassification 0.x tools) through the real CLI, on
the quickstart configs shrunk to two iterations of 32x32 images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from e2e_support import REPO, run_cli, run_dirs
from PIL import Image

pytestmark = pytest.mark.slow

QUICKSTART = REPO / "configs" / "quickstart"
TINY_IMAGES = [f"{split}_dataloader.dataset.img_size=32" for split in ("train", "val", "test")]
SEG_OVERRIDES = [
    "train_cfg.max_iters=2",
    "train_cfg.val_interval=2",
    "train_dataloader.batch_size=2",
    "train_dataloader.dataset.num_samples=4",
    "val_dataloader.dataset.num_samples=2",
    "val_dataloader.batch_size=2",
    "test_dataloader.dataset.num_samples=2",
    "test_dataloader.batch_size=2",
    "default_hooks.checkpoint.interval=2",
    *TINY_IMAGES,
]
CLS_OVERRIDES = [
    "train_cfg.max_epochs=1",
    "train_cfg.val_interval=1",
    "train_dataloader.batch_size=4",
    "train_dataloader.dataset.num_samples=8",
    "val_dataloader.dataset.num_samples=4",
    "val_dataloader.batch_size=4",
    "test_dataloader.dataset.num_samples=4",
    "test_dataloader.batch_size=4",
    *TINY_IMAGES,
]
# seg_shapes.py with a flip test-time augmentation (the shapes are rendered, not loaded)
SEG_TTA = """_base_ = [{base!r}]
tta_pipeline = [dict(type='TestTimeAug', transforms=[
    [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
    [dict(type='PackSegInputs')]])]
"""


def notices(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("notice: ")]


def assert_notices(result, *flags: str) -> None:
    """One notice per flag, each naming its flag, and no other notice."""
    lines = notices(result)
    assert len(lines) == len(flags), lines
    for line, flag in zip(lines, flags):
        assert line.startswith(f"notice: {flag} "), (line, flag)


def metrics_json(work_dir) -> dict:
    """The metrics the test run wrote to <work dir>/<ts>/<ts>.json."""
    (run,) = run_dirs(work_dir)
    return json.loads((run / f"{run.name}.json").read_text())


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    """seg_shapes (+ TTA) trained with a 0.x command line."""
    root = tmp_path_factory.mktemp("legacy_seg")
    cfg = root / "seg.py"
    cfg.write_text(SEG_TTA.format(base=str(QUICKSTART / "seg_shapes.py")))
    result = run_cli(
        "train", cfg, "--work_dir", root / "w", "--diff-seed", "--seed", "1", "--deterministic",
        "--options", *SEG_OVERRIDES, cwd=root,
    )  # fmt: skip
    return cfg, root, result


@pytest.fixture(scope="module")
def cls(tmp_path_factory):
    root = tmp_path_factory.mktemp("legacy_cls")
    cfg = QUICKSTART / "cls_shapes.py"
    result = run_cli(
        "train", cfg, "--work-dir", root / "w", "--cfg-options", *CLS_OVERRIDES, cwd=root
    )
    assert result.returncode == 0, result.output
    return cfg, root


def test_train_with_options_work_dir_and_seed_flags(seg):
    _, root, result = seg
    assert result.returncode == 0, result.output
    assert_notices(result, "--options", "--diff-seed")
    assert (root / "w" / "iter_2.pth").is_file() and not (root / "w" / "iter_3.pth").exists()
    dumped = (root / "w" / "seg.py").read_text()
    assert "diff_rank_seed=True" in dumped and "deterministic=True" in dumped
    meta = torch.load(root / "w" / "iter_2.pth", weights_only=True)["meta"]
    assert meta["seed"] == 1


def test_auto_resume_continues_a_finished_run(cls):
    cfg, root = cls
    result = run_cli(
        "train", cfg, "--work-dir", root / "w", "--auto-resume",
        "--cfg-options", *CLS_OVERRIDES, "train_cfg.max_epochs=2", cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert_notices(result, "--auto-resume")
    assert f"resumed from {root / 'w' / 'epoch_1.pth'}: epoch 1" in result.output
    assert (root / "w" / "epoch_2.pth").is_file()


def test_eval_aug_test_and_gpu_collect(seg, tmp_path):
    cfg, root, _ = seg
    result = run_cli(
        "test", cfg, root / "w" / "iter_2.pth", "--work-dir", tmp_path / "t",
        "--eval", "mIoU", "mDice", "--aug-test", "--gpu-collect", "--tmpdir", tmp_path / "x",
        "--cfg-options", *SEG_OVERRIDES, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert_notices(result, "--eval", "--aug-test", "--gpu-collect", "--tmpdir")
    metrics = metrics_json(tmp_path / "t")
    assert {"aAcc", "mIoU", "mDice"} <= set(metrics) and "mFscore" not in metrics
    (run,) = run_dirs(tmp_path / "t")
    assert "SegTTAModel" in (run / f"{run.name}.log").read_text()
    assert not (tmp_path / "x").exists()


def test_format_only_writes_pngs_to_imgfile_prefix(seg, tmp_path):
    cfg, root, _ = seg
    result = run_cli(
        "test", cfg, root / "w" / "iter_2.pth", "--work-dir", tmp_path / "t", "--format-only",
        "--eval-options", f"imgfile_prefix={tmp_path / 'pngs'}",
        "--cfg-options", *SEG_OVERRIDES, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert_notices(result, "--format-only", "--eval-options")
    pngs = sorted((tmp_path / "pngs").glob("*.png"))
    assert len(pngs) == 2
    mask = np.asarray(Image.open(pngs[0]))
    assert mask.shape == (32, 32) and mask.max() <= 6
    assert metrics_json(tmp_path / "t") == {}


def test_metrics_metric_options_and_out_items_none(cls, tmp_path):
    cfg, root = cls
    result = run_cli(
        "test", cfg, root / "w" / "epoch_1.pth", "--work-dir", tmp_path / "t",
        "--metrics", "accuracy", "--metric-options", "topk=(1,)",
        "--out-items", "none", "--out", tmp_path / "m.json",
        "--cfg-options", *CLS_OVERRIDES, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert_notices(result, "--metrics", "--metric-options", "--out-items none")
    written = json.loads((tmp_path / "m.json").read_text())
    assert list(written) == ["accuracy/top1"]
    assert written == metrics_json(tmp_path / "t")


def test_gpu_id_without_cuda_is_one_line(tmp_path):
    result = run_cli("train", QUICKSTART / "cls_shapes.py", "--gpu-id", "0", cwd=tmp_path)
    assert result.returncode == 2, result.output
    assert result.stderr.strip() == (
        "error: --gpu-id 0: no CUDA device is visible; drop --gpu-id to run on the CPU"
    )
    assert not (tmp_path / "work_dirs").exists()
