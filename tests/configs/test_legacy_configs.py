"""The 0.x configs of tests/data/legacy_configs (MMSegmentation, MMClassification and
MMSelfSup 0.x schema) against the hand-written 1.x configs of the same models:

- the translation builds the same model, the same optimizer, the same learning rate at every
  iteration of the run, the same batch size, evaluation interval and metric;
- ``vistra migrate-config`` writes a file that reloads to the same translation;
- each trains two iterations and validates through the real CLI on tiny data.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from e2e_support import run_cli, run_dirs
from legacy_support import REPO, TWINS, legacy_path, write_tiny_legacy

from vistra.cli.migrate_config import migrate
from vistra.config import Config
from vistra.config.legacy import legacy_markers, upgrade_config
from vistra.engine.optim import build_optim_wrapper
from vistra.engine.schedulers import build_param_schedulers
from vistra.registry import MODELS

NAMES = sorted(TWINS)
EPOCH_LENGTH = 5  # iterations per epoch for epoch-based runs (any value gives the same check)


def _translated(name: str) -> Config:
    cfg = upgrade_config(Config.fromfile(legacy_path(name)))
    assert cfg.legacy_notes, f"{name} was not recognised as a 0.x config"
    assert not legacy_markers(cfg), "the translation still holds 0.x keys"
    return cfg


def _twin(name: str) -> Config:
    return Config.fromfile(REPO / TWINS[name])


def _model_cfg(cfg: Config) -> dict:
    """The model config as the runner builds it (a top-level data_preprocessor merged in)."""
    model = dict(cfg.to_dict()["model"])
    if cfg.get("data_preprocessor") is not None:
        model.setdefault("data_preprocessor", cfg.to_dict()["data_preprocessor"])
    return model


def _build(cfg: Config) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.build(_model_cfg(cfg), key_path="model")


def _run_length(cfg: Config) -> tuple[int, int | None]:
    """(iterations, epochs or None) of the training run."""
    train_cfg = cfg.train_cfg
    if train_cfg.get("max_iters") is not None:
        return int(train_cfg.max_iters), None
    return int(train_cfg.max_epochs) * EPOCH_LENGTH, int(train_cfg.max_epochs)


def lr_curve(cfg: Config, model: torch.nn.Module) -> list[float]:
    """The learning rate of the first param group at every iteration of the run, stepping
    the schedulers as the ParamSchedulerHook does (iteration ones after each iteration,
    epoch ones after each epoch)."""
    optim = build_optim_wrapper(model, dict(cfg.to_dict()["optim_wrapper"]))
    iters, epochs = _run_length(cfg)
    schedulers = build_param_schedulers(
        cfg.to_dict().get("param_scheduler") or [],
        optim,
        epoch_length=EPOCH_LENGTH,
        max_epochs=epochs,
        max_iters=iters,
    )
    curve = []
    for it in range(iters):
        curve.append(optim.param_groups[0]["lr"])
        for s in schedulers:
            if not s.by_epoch:
                s.step()
        if (it + 1) % EPOCH_LENGTH == 0:
            for s in schedulers:
                if s.by_epoch:
                    s.step()
    return curve


def _loop_kind(train_cfg) -> str:
    """The loop a train_cfg builds: its type, or MMEngine's by_epoch shorthand."""
    if train_cfg.get("type"):
        return train_cfg.type
    return "EpochBasedTrainLoop" if train_cfg.get("by_epoch", True) else "IterBasedTrainLoop"


def _warmup_end(cfg: Config) -> int:
    """The first iteration after a LinearLR warm-up (0 without one)."""
    for s in cfg.to_dict().get("param_scheduler") or []:
        if isinstance(s, dict) and s.get("type") == "LinearLR":
            scale = EPOCH_LENGTH if s.get("convert_to_iter_based") else 1
            return int(s["end"]) * scale
    return 0


@pytest.fixture(scope="module", params=NAMES)
def pair(request):
    name = request.param
    translated, twin = _translated(name), _twin(name)
    return name, translated, twin, _build(translated), _build(twin)


def test_same_model(pair):
    name, translated, twin, model, twin_model = pair
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    twin_shapes = {k: tuple(v.shape) for k, v in twin_model.state_dict().items()}
    assert shapes == twin_shapes
    assert type(model) is type(twin_model)
    pre, twin_pre = model.data_preprocessor, twin_model.data_preprocessor
    assert type(pre) is type(twin_pre)
    for key, value in vars(twin_pre).items():
        if not key.startswith("_") and isinstance(value, (int, float, bool, tuple, str)):
            assert getattr(pre, key) == value, f"data_preprocessor.{key}"
    for key, buffer in twin_pre.named_buffers():
        assert torch.equal(dict(pre.named_buffers())[key], buffer), key


def test_same_optimizer(pair):
    name, translated, twin, model, twin_model = pair
    optim = build_optim_wrapper(model, dict(translated.to_dict()["optim_wrapper"]))
    twin_optim = build_optim_wrapper(twin_model, dict(twin.to_dict()["optim_wrapper"]))
    assert type(optim) is type(twin_optim)
    assert type(optim.optimizer) is type(twin_optim.optimizer)
    assert optim.optimizer.defaults == twin_optim.optimizer.defaults
    got, want = _per_param(optim, model), _per_param(twin_optim, twin_model)
    differing = {n for n in want if got[n] != want[n]}
    if name.startswith("mmselfsup/"):
        # MMSelfSup 0.x's MAE config exempts 'norm' from weight decay, a name this MAE (like
        # MMPretrain's) never uses: its LayerNorms are ln1/ln2, and the 1.x config says 'ln'.
        # The translation keeps 0.x's key, so LayerNorm weights are decayed, as in 0.x.
        layer_norms = {n for n in want if ".ln" in n and n.endswith(".weight")}
        assert differing == layer_norms
        assert all(got[n] == (want[n][0], 0.05) and want[n][1] == 0.0 for n in differing)
    else:
        assert not differing


def _per_param(optim, model) -> dict[str, tuple[float, float]]:
    """Each parameter's (lr, weight_decay) as the param groups set them."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in optim.optimizer.param_groups:
        for p in group["params"]:
            out[names[id(p)]] = (group["lr"], group.get("weight_decay", 0.0))
    return out


def test_same_learning_rate_at_every_iteration(pair):
    name, translated, twin, model, twin_model = pair
    curve, twin_curve = lr_curve(translated, model), lr_curve(twin, twin_model)
    assert len(curve) == len(twin_curve)
    total, warmup = len(curve), _warmup_end(twin)
    points = sorted({0, 1, warmup, total // 2, total - 1})
    for it in points:  # the acceptance points, named in a failure
        assert math.isclose(curve[it], twin_curve[it], rel_tol=1e-9, abs_tol=1e-15), (
            f"iteration {it}: {curve[it]} vs {twin_curve[it]}"
        )
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(curve, twin_curve))
    assert worst < 1e-9, f"largest relative difference over the run: {worst:.3g}"


def test_same_batch_size_loops_and_metrics(pair):
    name, translated, twin, *_ = pair
    assert translated.train_dataloader.batch_size == twin.train_dataloader.batch_size
    assert translated.train_dataloader.sampler.type == twin.train_dataloader.sampler.type
    assert _loop_kind(translated.train_cfg) == _loop_kind(twin.train_cfg)
    for key in ("max_iters", "max_epochs", "val_interval"):
        assert translated.train_cfg.get(key) == twin.train_cfg.get(key), f"train_cfg.{key}"
    if twin.get("val_evaluator") is None:
        assert translated.get("val_evaluator") is None
        return
    assert translated.val_dataloader.batch_size == twin.val_dataloader.batch_size
    got, want = translated.to_dict()["val_evaluator"], twin.to_dict()["val_evaluator"]
    assert got["type"] == want["type"]
    if want["type"] == "IoUMetric":
        assert got["iou_metrics"] == want["iou_metrics"]
    else:  # MMClassification 0.x reported top-1 and top-5; the 1.x CIFAR config top-1 only
        assert set(want["topk"]) <= set(got["topk"])


def test_same_datasets(pair):
    name, translated, twin, *_ = pair
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if twin.get(key) is None:
            continue
        got, want = translated.to_dict()[key]["dataset"], twin.to_dict()[key]["dataset"]
        assert _resolved(got) == _resolved(want), f"{key}.dataset"


def _resolved(dataset: dict) -> dict:
    """A dataset config with its paths joined to data_root and normalised: 0.x configs spell
    ImageNet's paths from the working directory, 1.x ones from data_root."""
    out = dict(dataset)
    root = out.pop("data_root", "") or ""
    if out.get("ann_file"):
        out["ann_file"] = os.path.normpath(os.path.join(root, out["ann_file"]))
    prefix = out.get("data_prefix")
    if isinstance(prefix, dict):
        out["data_prefix"] = {k: os.path.normpath(os.path.join(root, v)) for k, v in prefix.items()}
    elif root:
        out["root"] = os.path.normpath(root)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_migrate_config_writes_a_1x_file_that_reloads_to_the_translation(name, tmp_path):
    out = tmp_path / "migrated.py"
    migrate(str(legacy_path(name)), str(out))
    text = out.read_text()
    assert text.startswith("# Migrated by `vistra migrate-config`")
    assert str(legacy_path(name)) in text
    reloaded = Config.fromfile(out)
    assert not legacy_markers(reloaded)
    assert reloaded.to_dict() == _translated(name).to_dict()
    model = _build(reloaded)
    twin_model = _build(_twin(name))
    assert model.state_dict().keys() == twin_model.state_dict().keys()
    assert lr_curve(reloaded, model)[-1] == pytest.approx(lr_curve(_twin(name), twin_model)[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_trains_two_iterations_and_validates_through_the_cli(name, tmp_path):
    config = write_tiny_legacy(name, tmp_path)
    work = tmp_path / "work"
    result = run_cli("train", str(config), "--work-dir", str(work), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is a 0.x (MMCV runner) config" in result.stderr
    (run,) = run_dirs(work)
    log = (run / f"{run.name}.log").read_text()
    assert "translated to the 1.x schema" in log
    scalars = [json.loads(line) for line in (run / "vis_data" / "scalars.json").open()]
    steps = [s for s in scalars if "loss" in s]
    assert len(steps) == 2 and all(math.isfinite(s["loss"]) for s in steps)
    if Config.fromfile(config).data.get("val") is not None:
        metrics = [s for s in scalars if "loss" not in s]
        assert metrics, "no validation ran"
        assert any(k in metrics[-1] for k in ("mIoU", "accuracy/top1"))
    assert Path(work / "last_checkpoint").is_file()
