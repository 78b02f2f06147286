"""A non-finite loss stops training naming the iteration and the loss term, and keeps the
last checkpoint (or, with train_cfg.nonfinite_loss='skip', skips the step); real runs."""

from __future__ import annotations

import pytest
from e2e_support import run_cli

pytestmark = pytest.mark.slow


NAN_AT = """
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=-1),
                     logger=dict(type='LoggerHook', interval=1))
custom_hooks = [dict(type='NonFiniteWeightsHook', at_iter=3, value='{value}')]
"""


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_loss_stops_naming_iteration_and_term_and_keeps_the_checkpoint(
    tmp_path, tiny_cls_config, value
):
    config = tiny_cls_config(max_epochs=1, extra=NAN_AT.format(value=value))
    result = run_cli("train", config, "--work-dir", tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    # iteration 3's hook poisons the weights: iteration 4's loss is the first non-finite one
    assert last.startswith("error: train iter 4 (samples "), last
    assert "loss is nan (loss)" in last and "train_cfg.nonfinite_loss='skip'" in last, last
    checkpoints = sorted((tmp_path / "w").glob("iter_*.pth"))
    assert [p.name for p in checkpoints] == ["iter_1.pth", "iter_2.pth", "iter_3.pth"]
    assert (tmp_path / "w" / "last_checkpoint").read_text().strip() == "iter_3.pth"
    logs = list((tmp_path / "w").glob("*/*.log"))
    assert logs and "loss is nan" in logs[0].read_text()  # the log records why it stopped


def test_skip_policy_skips_non_finite_steps_and_finishes(tmp_path, tiny_cls_config):
    # NaN weights stay NaN, so every later step is skipped: the run still ends normally
    extra = NAN_AT.format(value="nan") + "train_cfg.update(nonfinite_loss='skip')\n"
    config = tiny_cls_config(max_epochs=1, extra=extra)
    result = run_cli("train", config, "--work-dir", tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 0, result.output[-2000:]
    assert "train iter 4: skipped, the loss is nan" in result.output
    assert (tmp_path / "w" / "iter_6.pth").is_file()  # 24 samples / batch 4


def test_debug_shows_the_traceback(tmp_path, tiny_cls_config):
    config = tiny_cls_config(max_epochs=1, extra=NAN_AT.format(value="nan"))
    result = run_cli("train", config, "--work-dir", tmp_path / "w", "--debug", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "NonFiniteLossError" in result.stderr
