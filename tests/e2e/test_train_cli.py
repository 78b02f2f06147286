"""End-to-end training through the real CLI on tiny generated data."""

from __future__ import annotations

import json
import re

import pytest
import torch
from e2e_support import assert_same_weights, load_weights, read_jsonl, run_cli, run_dirs

pytestmark = pytest.mark.slow

LOG_LINE = re.compile(
    r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d - vistra - INFO - Epoch\(train\) +\[\d+\]\[ *\d+/\d+\]  lr: \d\.\d{4}e[-+]\d\d  "
    r"eta: \d+:\d\d:\d\d  time: \d+\.\d{4}  data_time: \d+\.\d{4}  loss: \d+\.\d{4}"
)


def test_epoch_based_training_writes_the_work_dir_layout(tmp_path, tiny_cls_config):
    cfg = tiny_cls_config(max_epochs=2)
    work = tmp_path / "work"
    result = run_cli("train", cfg, "--work-dir", work, cwd=tmp_path)
    assert result.returncode == 0, result.output
    (run,) = run_dirs(work)
    log = (run / f"{run.name}.log").read_text()
    assert any(LOG_LINE.match(line) for line in log.splitlines()), log[-2000:]
    assert "Epoch(val) [2][3/3]" in log and "accuracy/top1:" in log
    scalars = read_jsonl(run / "vis_data" / "scalars.json")
    train_lines = [s for s in scalars if "loss" in s]
    val_lines = [s for s in scalars if "accuracy/top1" in s]
    assert train_lines and {"lr", "loss", "time", "data_time", "epoch", "iter", "step"} <= set(
        train_lines[0]
    )
    assert [v["step"] for v in val_lines] == [1, 2]
    assert (run / "vis_data" / "curves.png").stat().st_size > 1000
    for name in ("epoch_1.pth", "epoch_2.pth", "last_checkpoint", "tiny_cls.py"):
        assert (work / name).exists(), name
    assert (work / "last_checkpoint").read_text().strip() == "epoch_2.pth"
    assert list(work.glob("best_accuracy_top1_epoch_*.pth"))
    for ckpt in work.glob("*.pth"):  # every checkpoint is weights-only loadable
        data = torch.load(ckpt, weights_only=True)
        assert {"meta", "state_dict", "message_hub", "loop_state"} <= set(data)
        assert "head.fc.weight" in data["state_dict"]


def test_iteration_based_training_validates_every_interval(tmp_path, tiny_cls_config):
    extra = (
        "\ntrain_cfg = dict(by_epoch=False, max_iters=10, val_interval=5)\n"
        "train_dataloader['sampler'] = dict(type='InfiniteSampler', shuffle=True)\n"
        "param_scheduler = [dict(type='PolyLR', by_epoch=False, begin=0, end=10, power=1.0, eta_min=0.0)]\n"
        "default_hooks = dict(logger=dict(type='LoggerHook', interval=5), checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5))\n"
        "log_processor = dict(by_epoch=False)\n"
    )
    cfg = tiny_cls_config(extra=extra)
    work = tmp_path / "work"
    result = run_cli("train", cfg, "--work-dir", work, cwd=tmp_path)
    assert result.returncode == 0, result.output
    (run,) = run_dirs(work)
    log = (run / f"{run.name}.log").read_text()
    assert "Iter(train) [ 5/10]" in log and "Iter(train) [10/10]" in log
    assert log.count("Iter(val)") == 2
    assert (work / "iter_5.pth").exists() and (work / "iter_10.pth").exists()
    lrs = [s["lr"] for s in read_jsonl(run / "vis_data" / "scalars.json") if "lr" in s]
    # MMEngine's PolyLR reaches eta_min at the last step: factor (1 - t / (end - begin - 1))
    assert lrs[0] == pytest.approx(0.05 * (1 - 4 / 9)) and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def _record_extra(record_file, stop_at: int | None) -> str:
    hooks = [f"dict(type='RecordBatchesHook', out_file={str(record_file)!r})"]
    if stop_at:
        hooks.append(f"dict(type='SignalAtIterHook', at_iter={stop_at})")
    return f"\ncustom_hooks = [{', '.join(hooks)}]\n"


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_after_stop_is_bit_identical_without_replay(tmp_path, tiny_cls_config, num_workers):
    full = tiny_cls_config(
        "full.py",
        max_epochs=3,
        num_workers=num_workers,
        extra=_record_extra(tmp_path / "full.jsonl", None),
    )
    assert run_cli("train", full, "--work-dir", tmp_path / "full", cwd=tmp_path).returncode == 0

    # 24 samples / batch 4 = 6 iterations per epoch: stop in the middle of epoch 2.
    stopped = tiny_cls_config(
        "stopped.py",
        max_epochs=3,
        num_workers=num_workers,
        extra=_record_extra(tmp_path / "stopped.jsonl", 8),
    )
    first = run_cli("train", stopped, "--work-dir", tmp_path / "stopped", cwd=tmp_path)
    assert first.returncode == 0, first.output
    assert "received SIGTERM" in first.output and (tmp_path / "stopped" / "iter_8.pth").exists()
    assert not (tmp_path / "stopped" / "epoch_3.pth").exists()

    second = run_cli("train", stopped, "--work-dir", tmp_path / "stopped", "--resume", cwd=tmp_path)
    assert second.returncode == 0, second.output
    assert "resumed from" in second.output and "iter_8.pth" in second.output

    assert_same_weights(
        load_weights(tmp_path / "full" / "epoch_3.pth"),
        load_weights(tmp_path / "stopped" / "epoch_3.pth"),
    )
    full_batches = read_jsonl(tmp_path / "full.jsonl")
    resumed_batches = read_jsonl(tmp_path / "stopped.jsonl")
    assert [b["ids"] for b in resumed_batches] == [
        b["ids"] for b in full_batches
    ]  # none replayed or skipped
    assert [b["loss"] for b in resumed_batches] == [b["loss"] for b in full_batches]


def test_resume_without_checkpoint_says_so(tmp_path, tiny_cls_config):
    cfg = tiny_cls_config(max_epochs=1)
    result = run_cli("train", cfg, "--work-dir", tmp_path / "w", "--resume", cwd=tmp_path)
    assert result.returncode == 0
    assert "no checkpoint found" in result.output


def test_amp_on_cpu_trains_in_bfloat16(tmp_path, tiny_cls_config):
    cfg = tiny_cls_config(max_epochs=1)
    result = run_cli("train", cfg, "--work-dir", tmp_path / "w", "--amp", cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert "AmpOptimWrapper" in (tmp_path / "w" / "tiny_cls.py").read_text()
    assert (
        torch.load(tmp_path / "w" / "epoch_1.pth", weights_only=True)["state_dict"][
            "head.fc.weight"
        ].dtype
        == torch.float32
    )


def test_auto_scale_lr_counts_accumulation(tmp_path, tiny_cls_config):
    cfg = tiny_cls_config(
        max_epochs=1, extra="\noptim_wrapper['accumulative_counts'] = 2\nparam_scheduler = []\n"
    )
    result = run_cli("train", cfg, "--work-dir", tmp_path / "w", "--auto-scale-lr", cwd=tmp_path)
    assert result.returncode == 0, result.output
    # batch 4 x 1 process x 2 accumulation steps = 8 = base batch size 8 -> ratio 1; 4 x 2 / 8
    assert "LR is scaled by 1.0000" in result.output and "2 accumulation steps" in result.output
    result = run_cli(
        "train",
        cfg,
        "--work-dir",
        tmp_path / "w2",
        "--auto-scale-lr",
        "--cfg-options",
        "auto_scale_lr.base_batch_size=16",
        cwd=tmp_path,
    )
    (run,) = run_dirs(tmp_path / "w2")
    lrs = [s["lr"] for s in read_jsonl(run / "vis_data" / "scalars.json") if "lr" in s]
    assert lrs[0] == pytest.approx(0.05 * 8 / 16)


def test_load_from_with_mismatched_head_prints_key_table(tmp_path, tiny_cls_config):
    src = tiny_cls_config("src.py", num_classes=3, max_epochs=1)
    assert run_cli("train", src, "--work-dir", tmp_path / "src", cwd=tmp_path).returncode == 0
    dst = tiny_cls_config("dst.py", num_classes=4, max_epochs=1)
    result = run_cli(
        "train",
        dst,
        "--work-dir",
        tmp_path / "dst",
        "--load-from",
        tmp_path / "src" / "epoch_1.pth",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.output
    assert (
        "shape mismatch" in result.output
        and "head.fc.weight ckpt (3, 64) vs model (4, 64)" in result.output
    )


def test_seed_and_deterministic_flags_reach_the_config(tmp_path, tiny_cls_config):
    cfg = tiny_cls_config(max_epochs=1)
    result = run_cli(
        "train", cfg, "--work-dir", tmp_path / "w", "--seed", "3", "--deterministic", cwd=tmp_path
    )
    assert result.returncode == 0, result.output
    dumped = (tmp_path / "w" / "tiny_cls.py").read_text()
    assert "seed=3" in dumped and "deterministic=True" in dumped
    meta = torch.load(tmp_path / "w" / "epoch_1.pth", weights_only=True)["meta"]
    assert meta["seed"] == 3 and json.dumps(meta["dataset_meta"])
