"""Quickstart models trained once per test process at tiny size, for the tests that use a
trained model (inference API, analysis tools, export).

``trained_classifier()`` / ``trained_segmenter()`` run the real ``vistra train`` on the
quickstart config with a few dozen shapes images and one epoch, and return the merged
config and the checkpoint. The result is cached for the process (pytest runs one), so the
modules that need one share a single training run each.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TrainedModel:
    config: Path  # the work dir's merged config, reloadable
    checkpoint: Path
    work_dir: Path


_SHRINK_DATA = [
    "train_dataloader.dataset.num_samples=64",
    "train_dataloader.batch_size=16",
    "val_dataloader.dataset.num_samples=16",
    "test_dataloader.dataset.num_samples=24",
    "val_dataloader.batch_size=8",
    "test_dataloader.batch_size=8",
]


def _train(config: str, name: str, extra: list[str]) -> TrainedModel:
    work_dir = Path(tempfile.mkdtemp(prefix=f"vistra-trained-{name}-"))
    atexit.register(shutil.rmtree, work_dir, True)
    cmd = [
        sys.executable, "-m", "vistra", "train", str(REPO / config),
        "--work-dir", str(work_dir), "--cfg-options", *_SHRINK_DATA, *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(
            f"training {config} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    checkpoint = work_dir / (work_dir / "last_checkpoint").read_text().strip()
    merged = work_dir / (Path(config).stem + ".py")
    return TrainedModel(config=merged, checkpoint=checkpoint, work_dir=work_dir)


@functools.cache
def trained_classifier() -> TrainedModel:
    """The quickstart ResNet-18 shapes classifier (6 classes, 64 px), one tiny epoch."""
    return _train(
        "configs/quickstart/cls_shapes.py",
        "cls",
        ["train_cfg.max_epochs=1", "train_cfg.val_interval=1"],
    )


@functools.cache
def trained_segmenter() -> TrainedModel:
    """The quickstart DeepLabV3+ shapes segmenter (7 classes, 64 px), a few iterations."""
    return _train(
        "configs/quickstart/seg_shapes.py",
        "seg",
        [
            "train_cfg.max_iters=8",
            "train_cfg.val_interval=8",
            "default_hooks.checkpoint.interval=8",
            "default_hooks.logger.interval=4",
        ],
    )
