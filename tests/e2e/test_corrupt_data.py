"""A corrupt image in the middle of an epoch, through the real CLI: one ``error:`` line
naming the file, or, with ``skip_corrupt=True``, a finished run and one warning."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from e2e_support import TINY_CLS, run_cli, run_dirs
from PIL import Image

from vistra.data.errors import SKIP_HINT

pytestmark = pytest.mark.slow

# 3 classes x 4 images of 16x16, read in order (no shuffle): 3 batches of 4 per epoch, and
# sample 5 (imgs/b/001.png, in the second batch) is a truncated PNG.
FOLDER_DATASET = """
train_dataloader = dict(
    batch_size=4, num_workers={num_workers},
    dataset=dict(type='CustomDataset', data_root='imgs',
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5),
                           dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
"""
BAD = "imgs/b/001.png"


def _write_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name in "abc":
        for i in range(4):
            path = root / "imgs" / name / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    good = (root / BAD).read_bytes()
    (root / BAD).write_bytes(good[: len(good) // 2])


@pytest.fixture
def corrupt_run(tmp_path):
    _write_folder(tmp_path)

    def run(num_workers: int, *args: str):
        cfg = tmp_path / f"folder_{num_workers}.py"
        text = TINY_CLS.format(num_classes=3, max_epochs=2, num_workers=num_workers)
        cfg.write_text(text + FOLDER_DATASET.format(num_workers=num_workers))
        work_dir = tmp_path / f"w{num_workers}{'_skip' if args else ''}"
        return run_cli("train", cfg, "--work-dir", work_dir, *args, cwd=tmp_path), work_dir

    return run


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_image_stops_the_run_with_one_line_naming_it(corrupt_run, num_workers):
    result, _ = corrupt_run(num_workers)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot decode image {BAD!r} (sample 5 of CustomDataset"), last
    assert "image file is truncated" in last and last.endswith(SKIP_HINT)
    assert "Epoch(train) [1][2/3]" not in result.stdout  # it stopped in the second batch


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skip_corrupt_finishes_and_warns_once(corrupt_run, num_workers):
    # without persistent workers each epoch forks new ones: still one warning in all
    extra = ["--no-persistent-workers"] if num_workers else []
    options = ["--cfg-options", "train_dataloader.dataset.skip_corrupt=True"]
    result, work_dir = corrupt_run(num_workers, *extra, *options)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert (work_dir / "epoch_2.pth").is_file()
    log = (run_dirs(work_dir)[-1] / f"{run_dirs(work_dir)[-1].name}.log").read_text()
    warnings = [line for line in log.splitlines() if " - WARNING - " in line and BAD in line]
    assert len(warnings) == 1, log
    assert re.search(
        rf"WARNING - cannot decode image {re.escape(repr(BAD))} \(sample 5 of CustomDataset.*\): "
        r"image file is truncated \(\d+ bytes\); skip_corrupt=True: another sample is used in "
        r"its place \(reported once per file\)$",
        warnings[0],
    ), warnings[0]
