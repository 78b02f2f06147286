"""Training features that are about the command line: resuming past a corrupt checkpoint
with changed ``--cfg-options``, and ``test --show`` on a machine without a display."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from e2e_support import TINY_CLS, run_cli, run_dirs

pytestmark = pytest.mark.slow

# The machine's cores are shared: one thread is several times faster for tiny models.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SMALLER = "\ntrain_dataloader['dataset']['num_samples'] = 8\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny classifier trained for 2 epochs (2 iterations each) through the CLI."""
    root = tmp_path_factory.mktemp("features")
    cfg = root / "tiny_cls.py"
    cfg.write_text(TINY_CLS.format(num_classes=3, max_epochs=2, num_workers=0) + SMALLER)
    result = run_cli("train", cfg, "--work-dir", root / "work", cwd=root, env=ONE_THREAD)
    assert result.returncode == 0, result.output
    return cfg, root / "work"


def test_resume_skips_a_corrupt_newest_checkpoint_and_lists_config_changes(tmp_path, trained):
    cfg, work = trained
    work = shutil.copytree(work, tmp_path / "work")
    newest = work / "epoch_2.pth"
    assert (work / "last_checkpoint").read_text().strip() == newest.name
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a kill in the middle of a copy, say

    result = run_cli(
        "train",
        cfg,
        "--work-dir",
        work,
        "--resume",
        "--cfg-options",
        "optim_wrapper.optimizer.lr=0.01",
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.output
    out = result.output
    assert re.search(r"WARNING - checkpoint \S*epoch_2\.pth is corrupt", out), out[-3000:]
    assert re.search(r"resumed from \S*epoch_1\.pth: epoch 1, iter 2", out), out[-3000:]
    warning = out[out.index("config changed since") :].split(" - vistra - ")[0]
    changed = [ln.strip() for ln in warning.splitlines()[1:] if ln.startswith("  ")]
    # work_dir, resume and load_from changed too, as a resume expects: not worth a warning
    assert changed == ["optim_wrapper.optimizer.lr: 0.05 -> 0.01"], warning
    rewritten = torch.load(newest, weights_only=True)  # epoch 2 trained again and saved whole
    assert rewritten["meta"]["epoch"] == 2
    assert "Epoch(train) [2]" in out and "Epoch(train) [1]" not in out


def test_show_without_a_display_warns_once_and_finishes(tmp_path, trained, monkeypatch):
    cfg, work = trained
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = run_cli(
        "test",
        cfg,
        work / "epoch_1.pth",
        "--show",
        "--work-dir",
        tmp_path / "t",
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.output
    assert result.stderr.count("cannot show images (no DISPLAY") == 1, result.stderr[-2000:]
    (run,) = run_dirs(tmp_path / "t")
    assert (run / f"{run.name}.json").is_file()  # the test itself finished
