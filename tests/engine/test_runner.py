"""Runner features in real in-process runs: config checks and legacy keys, loop
schedules, SyncBN on CPU, TensorBoard, the log header and ``init_cfg`` pretrained loading.

Runs train a one-stage ResNet on a few 16x16 synthetic images (well under a second each).
"""

from __future__ import annotations

import bisect
import copy
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_classifier import (
    one_thread,  # noqa: F401 - a fixture for this module
    tiny_classifier_cfg,
)
from torch import nn

from vistra.config import Config
from vistra.dist.model_wrap import BatchNormXd, unwrap
from vistra.engine.hooks import Hook
from vistra.engine.runner import Runner
from vistra.registry import HOOKS, MODELS, RegistryError


# ----------------------------------------------------------------------------- helpers
@HOOKS.register_module(force=True)
class RunnerTestProbe(Hook):
    """Records when validation runs (completed epochs or iterations) and the weights the
    model holds when the run starts (after ``init_weights``)."""

    def __init__(self, by_epoch: bool = True) -> None:
        self.by_epoch = by_epoch
        self.val_points: list[int] = []
        self.start_weights: dict[str, torch.Tensor] = {}

    def before_run(self, runner: Any) -> None:
        model = unwrap(runner.model)
        self.start_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        self.val_points.append(runner.epoch if self.by_epoch else runner.iter)


tiny_cfg = tiny_classifier_cfg


def build(cfg: dict) -> Runner:
    return Runner.from_config(Config(copy.deepcopy(cfg)))


def train(cfg: dict) -> Runner:
    runner = build(cfg)
    runner.train()
    return runner


def probe_of(runner: Runner) -> RunnerTestProbe:
    (probe,) = [h for h in runner.hooks if isinstance(h, RunnerTestProbe)]
    return probe


def run_dir(work_dir: Path) -> Path:
    return sorted(p for p in Path(work_dir).iterdir() if p.is_dir() and p.name[:8].isdigit())[-1]


def log_text(work_dir: Path) -> str:
    run = run_dir(work_dir)
    return (run / f"{run.name}.log").read_text()


TENSORBOARD = dict(
    type="Visualizer",
    vis_backends=[dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")],
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs (2 iterations each) logging to the local and TensorBoard backends."""
    work = tmp_path_factory.mktemp("trained")
    cfg = tiny_cfg(work, visualizer=TENSORBOARD)
    before = set(threading.enumerate())
    train(cfg)
    writers = [  # TensorBoard writer threads the run left running
        t for t in set(threading.enumerate()) - before if type(t).__name__ == "_AsyncWriterThread"
    ]
    return work, cfg, writers


# ----------------------------------------------------------------------------- config checks
def test_a_stale_0x_evaluation_key_in_a_1x_config_is_ignored_with_one_note(tmp_path):
    # MMEngine keeps evaluation=dict(interval=2) in a 1.x config and never reads it (upstream
    # HorNet/ViT-IPU configs carry such stale keys): vistra runs train_cfg.val_interval and
    # says once, in the log, which 0.x key it ignored (a 0.x config mixing the two schemas
    # is still an error: tests/config/test_legacy_runtime.py)
    cfg = tiny_cfg(tmp_path, max_epochs=4, train_samples=4, evaluation=dict(interval=2))
    runner = build(cfg)
    assert runner.cfg["evaluation"] == dict(interval=2)  # kept, as MMEngine keeps it
    log = next(tmp_path.rglob("*.log")).read_text()
    assert log.count("also holds 0.x keys (evaluation)") == 1
    assert "they are ignored" in log


@pytest.mark.parametrize(
    "missing, present",
    [
        ("optim_wrapper", "train_dataloader"),
        ("train_cfg", "optim_wrapper"),
        ("val_evaluator", "val_dataloader"),
    ],
)
def test_an_incomplete_triple_names_what_is_set_and_what_is_missing(tmp_path, missing, present):
    cfg = tiny_cfg(tmp_path)
    del cfg[missing]
    with pytest.raises(RegistryError) as info:
        build(cfg)
    message = str(info.value)
    assert missing in message and present in message


# ----------------------------------------------------------------------------- loop schedules
def mmengine_val_points(
    max_progress: int, val_interval: int, val_begin: int = 1, dynamic: list | None = None
) -> list[int]:
    """MMEngine's EpochBasedTrainLoop/IterBasedTrainLoop schedule: after ``done`` epochs
    (iterations) the interval is that of the last milestone <= done + 1
    (``bisect(milestones, done + 1)``), and validation runs when
    ``done >= val_begin and (done % interval == 0 or done == max)``."""
    pairs = sorted(dynamic or [])
    milestones = [0] + [m for m, _ in pairs]
    intervals = [val_interval] + [i for _, i in pairs]
    points = []
    for done in range(1, max_progress + 1):
        interval = intervals[bisect.bisect(milestones, done + 1) - 1]
        if done >= val_begin and (done % interval == 0 or done == max_progress):
            points.append(done)
    return points


SCHEDULES = [
    # by_epoch, max, val_interval, val_begin, dynamic_intervals
    (True, 4, 2, 1, None),
    (True, 4, 1, 3, None),
    (True, 5, 2, 1, [(3, 1)]),
    # MMEngine validates at 2 already: bisect(milestones, done + 1) applies milestone 3
    (True, 5, 5, 1, [(3, 1)]),
    (False, 6, 3, 1, [(4, 1)]),
    (False, 6, 4, 1, [(4, 1)]),  # MMEngine: 3, 4, 5, 6
    (False, 7, 3, 4, None),
    (False, 5, 2, 1, None),
]


@pytest.mark.parametrize("by_epoch, max_progress, interval, begin, dynamic", SCHEDULES)
def test_validation_schedule_follows_mmengine(
    tmp_path, by_epoch, max_progress, interval, begin, dynamic
):
    loop = dict(val_interval=interval, val_begin=begin)
    if dynamic:
        loop["dynamic_intervals"] = dynamic
    if by_epoch:
        train_cfg = dict(by_epoch=True, max_epochs=max_progress, **loop)
    else:  # MMEngine's shorthand for an IterBasedTrainLoop
        train_cfg = dict(by_epoch=False, max_iters=max_progress, **loop)
    cfg = tiny_cfg(tmp_path, train_samples=4, train_cfg=train_cfg)
    cfg["custom_hooks"] = [dict(type="RunnerTestProbe", by_epoch=by_epoch)]
    cfg["default_hooks"]["checkpoint"] = None  # not what this test is about
    runner = train(cfg)
    expected_loop = "EpochBasedTrainLoop" if by_epoch else "IterBasedTrainLoop"
    assert type(runner.train_loop).__name__ == expected_loop
    assert runner.iter == max_progress  # one iteration per epoch
    assert probe_of(runner).val_points == mmengine_val_points(
        max_progress, interval, begin, dynamic
    )


def test_iteration_log_lines_with_the_shorthand(tmp_path):
    cfg = tiny_cfg(tmp_path, train_cfg=dict(by_epoch=False, max_iters=3, val_interval=3))
    cfg["log_processor"] = dict(by_epoch=False)
    train(cfg)
    log = log_text(tmp_path)
    assert "Iter(train) [3/3]" in log and "Iter(val) [1/1]" in log


# ----------------------------------------------------------------------------- SyncBN
def test_syncbn_config_trains_on_cpu_as_bn(tmp_path):
    cfg = tiny_cfg(tmp_path, max_epochs=1)
    cfg["model"]["backbone"]["norm_cfg"] = dict(type="SyncBN", requires_grad=True)
    cfg.update(test_dataloader=cfg["val_dataloader"], test_evaluator=cfg["val_evaluator"])
    cfg["test_cfg"] = dict()
    runner = train(cfg)
    modules = list(unwrap(runner.model).modules())
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in modules)
    assert any(isinstance(m, BatchNormXd) for m in modules)  # BN of any input rank
    assert "SyncBN converted to BN: this run is single-process" in log_text(tmp_path)
    # the checkpoint has the keys a BN model has, and testing it converts again
    bn_cfg = copy.deepcopy(cfg["model"])
    bn_cfg["backbone"]["norm_cfg"] = dict(type="BN")
    saved = torch.load(tmp_path / "epoch_1.pth", weights_only=True)["state_dict"]
    assert set(saved) == set(MODELS.build(bn_cfg).state_dict())
    metrics = build(dict(cfg, load_from=str(tmp_path / "epoch_1.pth"))).test()
    assert 0.0 <= metrics["accuracy/top1"] <= 100.0


# ----------------------------------------------------------------------------- logging
def test_tensorboard_scalars_read_back(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work = trained[0]
    vis = run_dir(work) / "vis_data"
    (events,) = vis.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert {"loss", "lr", "accuracy/top1"} <= set(acc.Tags()["scalars"])
    local = [json.loads(line) for line in (vis / "scalars.json").read_text().splitlines()]
    for tag in ("loss", "lr", "accuracy/top1"):
        expected = [(r["step"], r[tag]) for r in local if tag in r]
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in expected], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6), tag
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]  # one per iteration
    assert [e.step for e in acc.Scalars("accuracy/top1")] == [1, 2]  # one per epoch
    # the run is over: TensorBoard's writer is closed, its thread gone (MMEngine closes too)
    assert not trained[2]


def test_log_header_has_the_environment_and_the_full_config(trained):
    work, cfg, _ = trained
    log = log_text(work)
    env = log[log.index("Environment:") : log.index("Config:")]
    for line in (f"PyTorch: {torch.__version__}", "device: cpu", "seed: 0"):
        assert line in env, line
    config = log[log.index("Config:") :]
    for key in cfg:
        assert f"\n{key} = " in config, key
    assert "lr=0.05" in config


def test_scalars_json_is_one_object_per_line(trained):
    work = trained[0]
    lines = (run_dir(work) / "vis_data" / "scalars.json").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4 + 2  # 4 iterations logged, 2 validations
    assert all(isinstance(r, dict) and isinstance(r["step"], int) for r in records)
    train_records = [r for r in records if "loss" in r]
    assert {"lr", "loss", "time", "data_time", "epoch", "iter", "step"} <= set(train_records[0])


# ----------------------------------------------------------------------------- init_cfg
def test_pretrained_init_cfg_with_prefix_loads_every_backbone_weight(trained, tmp_path):
    work, cfg, _ = trained
    source = work / "epoch_1.pth"
    new = copy.deepcopy(cfg)
    new.update(work_dir=str(tmp_path), custom_hooks=[dict(type="RunnerTestProbe")])
    new["model"]["backbone"]["init_cfg"] = dict(
        type="Pretrained", checkpoint=str(source), prefix="backbone."
    )
    new["train_cfg"]["max_epochs"] = 1
    start = probe_of(train(new)).start_weights
    saved = torch.load(source, weights_only=True)["state_dict"]
    backbone = {k: v for k, v in saved.items() if k.startswith("backbone.")}
    assert backbone and set(backbone) == {k for k in start if k.startswith("backbone.")}
    differing = [k for k, v in backbone.items() if not torch.equal(start[k], v)]
    assert not differing, f"not loaded from {source.name}: {differing[:5]}"
    assert not torch.equal(start["head.fc.weight"], saved["head.fc.weight"])  # prefix kept out


def test_train_ends_its_persistent_workers_when_it_returns(tmp_path):
    import multiprocessing

    cfg = tiny_cfg(tmp_path, max_epochs=1)
    cfg["train_dataloader"] = dict(cfg["train_dataloader"], num_workers=1, persistent_workers=True)
    runner = train(cfg)
    # left to the garbage collector, the cycle runner <-> loop would keep the worker alive
    # and a later collection would stall 10 s (vistra.engine.build.stop_loader_workers)
    assert not [c for c in multiprocessing.active_children() if c.daemon]
    assert runner.train_dataloader._iterator is None


class _Niceness(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        import os

        return os.nice(0)


def test_loader_workers_run_at_a_lower_priority_than_the_training_process():
    import os

    from vistra.engine.build import WORKER_NICENESS, build_dataloader

    cfg = dict(
        batch_size=2, num_workers=1, dataset=_Niceness(), collate_fn=dict(type="default_collate")
    )
    (batch,) = list(build_dataloader(cfg, "train_dataloader", 0, 0))
    assert batch.tolist() == [min(os.nice(0) + WORKER_NICENESS, 19)] * 2
