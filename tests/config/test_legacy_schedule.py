"""0.x runner/optimizer/lr_config -> 1.x (vistra.config.legacy.schedule), checked by building
the translated keys with vistra's engine and comparing every iteration's lr with MMCV's
LrUpdaterHook maths, written out below."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from vistra.config.errors import ConfigError
from vistra.config.legacy.context import LegacyContext
from vistra.config.legacy.optimizer import LAYER_DECAY_KEYS
from vistra.config.legacy.schedule import translate
from vistra.engine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from vistra.engine.optim_constructor import LearningRateDecayOptimWrapperConstructor
from vistra.engine.schedulers import build_param_schedulers

BASE_LR = 0.1
EPOCH_LEN = 7  # iterations per epoch under the epoch runner
OPTIMIZER = dict(type="SGD", lr=BASE_LR, momentum=0.9, weight_decay=1e-4)
# (runner, lr_config.by_epoch, the unit of counts the user gives: run length / 10)
MODES = {
    "iter": (dict(type="IterBasedRunner", max_iters=100), False, 10),
    "epoch": (dict(type="EpochBasedRunner", max_epochs=10), True, 1),
    "epoch_per_iter": (dict(type="EpochBasedRunner", max_epochs=10), False, 7),
}


# ---------------------------------------------------------------------- MMCV's maths
def annealing_cos(start: float, end: float, factor: float, weight: float = 1.0) -> float:
    return end + 0.5 * weight * (start - end) * (math.cos(math.pi * factor) + 1)


def target(a: dict, base: float) -> float:
    return base * a["min_lr_ratio"] if "min_lr_ratio" in a else a["min_lr"]


@dataclass
class Run:
    by_epoch: bool
    max_iters: int
    warmup_iters: int | None  # None without a warm-up


def step_lr(a, base, p, maxp, run):
    step = a["step"]
    exp = p // step if isinstance(step, int) else sum(p >= s for s in step)
    return base * a.get("gamma", 0.1) ** exp


def flat_cos_lr(a, base, p, maxp, run):
    start = round(maxp * a.get("start_percent", 0.75))
    return base if p < start else annealing_cos(base, target(a, base), (p - start) / (maxp - start))


def restart_lr(a, base, p, maxp, run):
    ends = [sum(a["periods"][: i + 1]) for i in range(len(a["periods"]))]
    i = next(i for i, end in enumerate(ends) if p < end)
    alpha = min((p - (ends[i - 1] if i else 0)) / a["periods"][i], 1)
    return annealing_cos(base, target(a, base), alpha, a.get("restart_weights", [1])[i])


def one_cycle_lr(a, base, p, maxp, run):
    total, pct, div = (
        a.get("total_steps", run.max_iters),
        a.get("pct_start", 0.3),
        a.get("div_factor", 25),
    )
    low = a["max_lr"] / div
    if a.get("three_phase", False):
        phases = [
            (pct * total - 1, 1, div),
            (2 * pct * total - 2, div, 1),
            (total - 1, 1, 1 / a.get("final_div_factor", 1e4)),
        ]
    else:
        phases = [(pct * total - 1, 1, div), (total - 1, div, 1 / a.get("final_div_factor", 1e4))]
    anneal = (
        annealing_cos
        if a.get("anneal_strategy", "cos") == "cos"
        else (lambda s, e, f: s + (e - s) * f)
    )
    start = 0
    for end, s, e in phases:
        if p <= end:
            return anneal(low * s, low * e, (p - start) / (end - start))
        start = end
    raise AssertionError("past total_steps")


def step_fix_lr(a, base, p, maxp, run):
    if run.warmup_iters is not None:  # MMSelfSup 0.x: the cosine starts after the warm-up
        shift = run.warmup_iters // EPOCH_LEN if run.by_epoch else run.warmup_iters
        p, maxp = p - shift, maxp - shift
    return annealing_cos(base, target(a, base), p / maxp)


def poly_lr(a, base, p, maxp, run):
    low = a.get("min_lr", 0.0)
    return (base - low) * (1 - p / maxp) ** a.get("power", 1.0) + low


REGULAR = {
    "Fixed": lambda a, base, p, maxp, run: base,
    "Step": step_lr,
    "Exp": lambda a, base, p, maxp, run: base * a["gamma"] ** p,
    "Poly": poly_lr,
    "CosineAnnealing": lambda a, base, p, maxp, run: annealing_cos(base, target(a, base), p / maxp),
    "FlatCosineAnnealing": flat_cos_lr,
    "CosineRestart": restart_lr,
    "OneCycle": one_cycle_lr,
    "LinearAnnealing": lambda a, base, p, maxp, run: base + (target(a, base) - base) * p / maxp,
    "StepFixCosineAnnealing": step_fix_lr,
}  # fmt: skip


def mmcv_warmup_factor(kind: str, t: int, total: int, ratio: float) -> float:
    if kind == "constant":
        return ratio
    if kind == "linear":
        return 1 - (1 - t / total) * (1 - ratio)
    return ratio ** (1 - t / total)


def mmcv_lrs(
    lr_config: dict, runner: dict, base: float = BASE_LR, max_shift: int = 0
) -> list[float]:
    """Every iteration's lr under MMCV's LrUpdaterHook: epoch policies read progress=epoch,
    iteration ones progress=iter; the warm-up scales the regular lr per iteration.
    ``max_shift`` shortens max_progress (to describe MMEngine's PolyLR/LinearLR end)."""
    a = dict(lr_config)
    policy = a.pop("policy")
    policy = policy.title() if policy == policy.lower() else policy
    by_epoch = a.pop("by_epoch", policy != "OneCycle")
    warmup, ratio = a.pop("warmup", None), a.pop("warmup_ratio", 0.1)
    iter_runner = "max_iters" in runner
    max_iters = runner["max_iters"] if iter_runner else runner["max_epochs"] * EPOCH_LEN
    warmup_iters = a.pop("warmup_iters", 0) * (EPOCH_LEN if a.pop("warmup_by_epoch", False) else 1)
    run = Run(by_epoch, max_iters, warmup_iters if warmup else None)
    lrs = []
    for it in range(max_iters):
        p, maxp = (it // EPOCH_LEN, runner["max_epochs"]) if by_epoch else (it, max_iters)
        lr = REGULAR[policy](a, base, p, maxp - max_shift, run)
        if warmup and it < warmup_iters:
            lr *= mmcv_warmup_factor(warmup, it, warmup_iters, ratio)
        lrs.append(lr)
    return lrs


def mmcv_momenta(config: dict, runner: dict, base: float = 0.9) -> list[float]:
    a = dict(config)
    policy, by_epoch = a.pop("policy"), a.pop("by_epoch", True)
    max_iters = runner.get("max_iters") or runner["max_epochs"] * EPOCH_LEN
    out = []
    for it in range(max_iters):
        p, maxp = (it // EPOCH_LEN, runner["max_epochs"]) if by_epoch else (it, max_iters)
        if policy == "CosineAnnealing":
            low = base * a["min_momentum_ratio"] if "min_momentum_ratio" in a else a["min_momentum"]
            out.append(annealing_cos(base, low, p / maxp))
        else:
            out.append(step_lr(dict(a, gamma=a.get("gamma", 0.5)), base, p, maxp, None))
    return out


# ---------------------------------------------------------------------- vistra's side
def legacy(**old) -> LegacyContext:
    old.setdefault("optimizer", dict(OPTIMIZER))
    iter_based = "max_iters" in (old.get("runner") or {})
    ctx = LegacyContext(source="cfg.py", old=old, task="classification", iter_based=iter_based)
    translate(ctx)
    return ctx


def vistra_run(new: dict, runner: dict, key: str = "lr") -> list[float]:
    """Build the translated optim_wrapper and param_scheduler and step them as
    ParamSchedulerHook does (iteration schedulers after each iteration, epoch ones after each
    epoch); the value in effect at every iteration."""
    wrapper = build_optim_wrapper(nn.Linear(2, 2), new["optim_wrapper"])
    iter_runner = "max_iters" in runner
    epochs, length = (1, runner["max_iters"]) if iter_runner else (runner["max_epochs"], EPOCH_LEN)
    schedulers = build_param_schedulers(
        new.get("param_scheduler", []),
        wrapper,
        epoch_length=length,
        max_epochs=epochs,
        max_iters=epochs * length,
    )
    values = []
    for _ in range(epochs):
        for _ in range(length):
            values.append(wrapper.param_groups[0][key])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
        for s in schedulers:
            if s.by_epoch:
                s.step()
    return values


def max_rel_diff(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) / max(abs(y), 1e-30) for x, y in zip(a, b)), default=0.0)


def exact(a: list[float], b: list[float]) -> bool:
    return a == pytest.approx(b, rel=1e-9, abs=1e-15)


# ---------------------------------------------------------------------- policies, no warm-up
# name -> (lr_config given the count unit u, how MMEngine's mapping relates to MMCV)
POLICIES = {
    "poly": (lambda u: dict(policy="poly", power=0.9), "end-1"),
    "poly_min_lr": (lambda u: dict(policy="poly", power=0.9, min_lr=1e-3), "end-1"),
    "step_list": (lambda u: dict(policy="step", step=[3 * u, 6 * u]), "exact"),
    "step_int": (lambda u: dict(policy="step", step=4 * u, gamma=0.5), "exact"),
    "exp": (lambda u: dict(policy="exp", gamma=0.97), "exact"),
    "cosine_min_lr": (lambda u: dict(policy="CosineAnnealing", min_lr=1e-3), "exact"),
    "cosine_ratio": (lambda u: dict(policy="CosineAnnealing", min_lr_ratio=0.01), "exact"),
    "flat_cosine": (
        lambda u: dict(policy="FlatCosineAnnealing", start_percent=0.5, min_lr=1e-3), "exact"),
    "restart": (
        lambda u: dict(policy="CosineRestart", periods=[4 * u, 6 * u], restart_weights=[1, 0.5],
                       min_lr=0.0), "exact"),
    "one_cycle": (lambda u: dict(policy="OneCycle", max_lr=0.5, pct_start=0.25), "exact"),
    "one_cycle_3phase": (
        lambda u: dict(policy="OneCycle", max_lr=0.5, three_phase=True, anneal_strategy="linear",
                       total_steps=12 * u), "exact"),
    "linear_ratio": (lambda u: dict(policy="LinearAnnealing", min_lr_ratio=0.05), "end-1"),
    "linear_min_lr": (lambda u: dict(policy="LinearAnnealing", min_lr=2e-3), "end-1"),
    "step_fix_cosine": (
        lambda u: dict(policy="StepFixCosineAnnealing", min_lr_ratio=0.01), "exact"),
}  # fmt: skip


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(POLICIES))
def test_policy_matches_mmcv(mode: str, name: str) -> None:
    runner, by_epoch, unit = MODES[mode]
    make, relation = POLICIES[name]
    lr_config = dict(make(unit), by_epoch=by_epoch)
    if name.startswith("one_cycle"):
        if by_epoch:
            with pytest.raises(ConfigError, match="by_epoch=False"):
                legacy(runner=runner, lr_config=lr_config)
            return
        lr_config.pop("by_epoch")
    ctx = legacy(runner=runner, lr_config=lr_config)
    got = vistra_run(ctx.new, runner)
    mmcv = mmcv_lrs(lr_config, runner)
    diff = max_rel_diff(got, mmcv)
    if relation == "exact":
        assert exact(got, mmcv), f"{name}/{mode}: max relative difference {diff:.3g}"
        return
    # PolyLR/LinearLR (begin=0, end=max) reach their end value at max - 1, MMCV at max:
    # exactly MMCV's curve with max_progress - 1.
    assert exact(got, mmcv_lrs(lr_config, runner, max_shift=1)), f"{name}/{mode}"
    assert exact(got[:1], mmcv[:1]) and 0 < diff <= 1, f"{name}/{mode}: max rel diff {diff:.3g}"


def test_translated_keys_and_notes() -> None:
    ctx = legacy(
        runner=dict(type="IterBasedRunner", max_iters=40000),
        lr_config=dict(policy="poly", power=0.9, min_lr=1e-4, by_epoch=False),
    )
    assert ctx.new["train_cfg"] == dict(type="IterBasedTrainLoop", max_iters=40000)
    assert ctx.new["param_scheduler"] == [
        dict(type="PolyLR", power=0.9, eta_min=1e-4, begin=0, end=40000, by_epoch=False)
    ]
    assert ctx.new["optim_wrapper"] == dict(type="OptimWrapper", optimizer=OPTIMIZER)
    for key in ("runner", "lr_config", "optimizer"):
        assert key not in ctx.new
    assert (
        "lr_config (Poly, power 0.9, min_lr 0.0001, by_epoch False) -> param_scheduler "
        "[PolyLR 0..40000 iters]" in ctx.notes
    )
    per_iter = legacy(
        runner=dict(max_epochs=100),
        lr_config=dict(policy="CosineAnnealing", min_lr=0, by_epoch=False),
    )
    assert per_iter.new["train_cfg"] == dict(type="EpochBasedTrainLoop", max_epochs=100)
    assert per_iter.new["param_scheduler"] == [
        dict(
            type="CosineAnnealingLR",
            T_max=100,
            eta_min=0,
            begin=0,
            end=100,
            by_epoch=True,
            convert_to_iter_based=True,
        )
    ]
    old_style = legacy(total_epochs=12, lr_config=dict(policy="step", step=[8, 11]))
    assert old_style.new["train_cfg"] == dict(type="EpochBasedTrainLoop", max_epochs=12)
    assert "total_epochs" not in old_style.new


def test_fixed_policy_and_no_lr_config() -> None:
    ctx = legacy(runner=dict(type="IterBasedRunner", max_iters=10), lr_config=dict(policy="fixed"))
    assert "param_scheduler" not in ctx.new
    ctx = legacy(runner=dict(type="IterBasedRunner", max_iters=10), lr_config=None)
    assert "param_scheduler" not in ctx.new and "lr_config" not in ctx.new


def test_cosine_restart_weight_with_min_lr_differs_as_noted() -> None:
    runner, _, _ = MODES["iter"]
    cfg = dict(
        policy="CosineRestart",
        periods=[40, 60],
        restart_weights=[1, 0.5],
        min_lr=1e-2,
        by_epoch=False,
    )
    ctx = legacy(runner=runner, lr_config=cfg)
    got, mmcv = vistra_run(ctx.new, runner), mmcv_lrs(cfg, runner)
    assert exact(got[:40], mmcv[:40])  # weight 1: the same
    diff = max_rel_diff(got[40:], mmcv[40:])
    # restarts from 0.5 * base instead of min_lr + 0.5 * (base - min_lr)
    assert got[40] == pytest.approx(0.05) and mmcv[40] == pytest.approx(0.055), diff
    assert any("CosineRestartLR restarts from" in n for n in ctx.notes)


# ---------------------------------------------------------------------- warm-ups
def engine_warmup_factor(kind: str, t: int, total: int, ratio: float) -> float:
    """The guide's LinearLR/ConstantLR over [0, total): full factor from t = total - 1."""
    if kind == "linear":
        return ratio + (1 - ratio) * min(t, total - 1) / (total - 1)
    return ratio if t < total - 1 else 1.0


WARMUP_MAINS = {  # multiplicative mains: warm-up and decay compose exactly
    "step": lambda u: dict(policy="step", step=[3 * u, 6 * u]),
    "cosine": lambda u: dict(policy="CosineAnnealing", min_lr_ratio=0.0),
    "exp": lambda u: dict(policy="exp", gamma=0.98),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", ["linear", "constant", "exp"])
@pytest.mark.parametrize("main", list(WARMUP_MAINS))
@pytest.mark.parametrize("in_epochs", [False, True])
def test_warmup_matches_mmcv(mode: str, kind: str, main: str, in_epochs: bool) -> None:
    runner, by_epoch, unit = MODES[mode]
    warmup = dict(warmup=kind, warmup_iters=2 if in_epochs else 15, warmup_ratio=0.01)
    if in_epochs:
        warmup["warmup_by_epoch"] = True
    lr_config = dict(WARMUP_MAINS[main](unit), by_epoch=by_epoch, **warmup)
    if in_epochs and (mode == "iter" or kind == "exp"):
        with pytest.raises(ConfigError, match="warmup_by_epoch"):
            legacy(runner=runner, lr_config=lr_config)
        return
    ctx = legacy(runner=runner, lr_config=lr_config)
    got, mmcv = vistra_run(ctx.new, runner), mmcv_lrs(lr_config, runner)
    diff = max_rel_diff(got, mmcv)
    if kind == "exp":  # ConstantLR(ratio) + ExponentialLR(ratio ** (-1 / Tw)): MMCV's curve
        assert exact(got, mmcv), f"exp warm-up: max relative difference {diff:.3g}"
        return
    total = 2 * EPOCH_LEN if in_epochs else 15
    regular = mmcv_lrs({k: v for k, v in lr_config.items() if not k.startswith("warmup")}, runner)
    expected = [
        r * engine_warmup_factor(kind, t, total, 0.01) if t < total else r
        for t, r in enumerate(regular)
    ]
    assert exact(got, expected), f"{kind} warm-up/{main}/{mode}"
    assert exact(got[total:], mmcv[total:])  # exact once the warm-up is over
    known = max(
        abs(
            engine_warmup_factor(kind, t, total, 0.01) / mmcv_warmup_factor(kind, t, total, 0.01)
            - 1
        )
        for t in range(total)
    )
    assert diff == pytest.approx(known, rel=1e-6), f"max relative difference {diff:.3g}"


@pytest.mark.parametrize("kind", ["linear", "constant", "exp"])
def test_warmup_with_min_lr_differs_slightly(kind: str) -> None:
    """With min_lr != 0 the chained warm-up and poly decay are not MMCV's product: the decay
    pulls the warmed-up lr towards min_lr. Measured here with min_lr = 1% of the lr."""
    runner, _, _ = MODES["iter"]
    cfg = dict(
        policy="poly",
        power=1.0,
        min_lr=1e-3,
        by_epoch=False,
        warmup=kind,
        warmup_iters=15,
        warmup_ratio=0.1,
    )
    ctx = legacy(runner=runner, lr_config=cfg)
    assert any("composes with" in n for n in ctx.notes)
    got, mmcv = vistra_run(ctx.new, runner), mmcv_lrs(cfg, runner, max_shift=1)
    during, after = max_rel_diff(got[:15], mmcv[:15]), max_rel_diff(got[15:], mmcv[15:])
    message = f"{kind}: max relative difference {during:.3g} during the warm-up, {after:.3g} after"
    assert 0 < after < 0.02, message
    assert during < (10 if kind == "constant" else 0.1), message  # constant: 1/ratio at Tw-1


@pytest.mark.parametrize("mode", list(MODES))
def test_step_fix_cosine_starts_after_the_warmup(mode: str) -> None:
    runner, by_epoch, _ = MODES[mode]
    warm = dict(warmup="linear", warmup_iters=2, warmup_ratio=1e-3, warmup_by_epoch=True)
    if mode == "iter":
        warm = dict(warmup="linear", warmup_iters=10, warmup_ratio=1e-3)
    cfg = dict(policy="StepFixCosineAnnealing", min_lr=1e-4, by_epoch=by_epoch, **warm)
    ctx = legacy(runner=runner, lr_config=cfg)
    got, mmcv = vistra_run(ctx.new, runner), mmcv_lrs(cfg, runner)
    total = 10 if mode == "iter" else 2 * EPOCH_LEN
    assert exact(got[total:], mmcv[total:]), mode  # the cosine itself is MMSelfSup's
    # during the warm-up vistra scales the base lr, MMSelfSup a cosine taken before its start
    warmup = [BASE_LR * engine_warmup_factor("linear", t, total, 1e-3) for t in range(total)]
    assert exact(got[:total], warmup)
    diff = max_rel_diff(got[:total], mmcv[:total])
    assert diff < 0.5, f"max relative difference during the warm-up {diff:.3g}"


def test_step_fix_cosine_needs_epoch_warmup_under_epoch_runner() -> None:
    cfg = dict(policy="StepFixCosineAnnealing", min_lr=0.0, warmup="linear", warmup_iters=20)
    with pytest.raises(ConfigError, match=r"lr_config\.warmup_by_epoch: must be True"):
        legacy(runner=dict(type="EpochBasedRunner", max_epochs=10), lr_config=cfg)


# ---------------------------------------------------------------------- momentum
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("policy", ["CosineAnnealing", "step"])
def test_momentum_matches_mmcv(mode: str, policy: str) -> None:
    runner, by_epoch, unit = MODES[mode]
    cfg = dict(policy=policy, by_epoch=by_epoch)
    cfg.update(min_momentum=0.85) if policy == "CosineAnnealing" else cfg.update(
        step=[3 * unit, 6 * unit]
    )
    ctx = legacy(runner=runner, momentum_config=cfg)
    expected = mmcv_momenta(dict(cfg, policy="Step" if policy == "step" else policy), runner)
    assert exact(vistra_run(ctx.new, runner, key="momentum"), expected)


def test_momentum_errors() -> None:
    runner = dict(type="EpochBasedRunner", max_epochs=5)
    with pytest.raises(
        ConfigError, match=r"momentum_config\.policy.*supported: CosineAnnealing, step"
    ):
        legacy(runner=runner, momentum_config=dict(policy="cyclic"))
    with pytest.raises(ConfigError, match="momentum warm-up"):
        legacy(
            runner=runner,
            momentum_config=dict(policy="step", step=[2], warmup="linear", warmup_iters=3),
        )


# ---------------------------------------------------------------------- schedule errors
def test_unknown_policy_lists_the_supported_ones() -> None:
    runner = dict(type="IterBasedRunner", max_iters=10)
    with pytest.raises(ConfigError) as err:
        legacy(runner=runner, lr_config=dict(policy="inv", gamma=0.1, by_epoch=False))
    assert "cfg.py: lr_config.policy" in str(err.value) and "'inv'" in str(err.value)
    assert "poly, CosineAnnealing" in str(err.value) and "StepFixCosineAnnealing" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'CosineAnnealing'"):
        legacy(runner=runner, lr_config=dict(policy="cosineannealing", min_lr=0, by_epoch=False))
    with pytest.raises(
        ConfigError,
        match=r"lr_config\.warmup: unsupported warm-up 'cosine'; supported: constant, linear, exp",
    ):
        legacy(
            runner=runner,
            lr_config=dict(policy="poly", by_epoch=False, warmup="cosine", warmup_iters=2),
        )
    with pytest.raises(ConfigError, match=r"lr_config\.powr: .*did you mean 'power'"):
        legacy(runner=runner, lr_config=dict(policy="poly", powr=0.9, by_epoch=False))
    with pytest.raises(ConfigError, match="clamp"):
        legacy(runner=runner, lr_config=dict(policy="step", step=[5], min_lr=1e-5, by_epoch=False))


def test_runner_errors() -> None:
    iter_runner = dict(type="IterBasedRunner", max_iters=10)
    with pytest.raises(
        ConfigError, match=r"lr_config\.by_epoch: .*IterBasedRunner: set by_epoch=False"
    ):
        legacy(runner=iter_runner, lr_config=dict(policy="poly"))
    with pytest.raises(
        ConfigError, match=r"runner\.type: .*supported: IterBasedRunner, EpochBasedRunner"
    ):
        legacy(runner=dict(type="EpochBasedRunnerAmp", max_epochs=3))
    with pytest.raises(ConfigError, match=r"cfg.py: runner: lr_config needs the run length"):
        legacy(lr_config=dict(policy="poly"))
    with pytest.raises(ConfigError, match=r"runner: IterBasedRunner takes type and max_iters"):
        legacy(runner=dict(type="IterBasedRunner", max_epochs=3))
    with pytest.raises(ConfigError, match="total_epochs=12 disagrees"):
        legacy(runner=dict(type="EpochBasedRunner", max_epochs=10), total_epochs=12)
    with pytest.raises(ConfigError, match="OneCycle warms up by itself"):
        legacy(
            runner=iter_runner,
            lr_config=dict(policy="OneCycle", max_lr=1.0, warmup="linear", warmup_iters=2),
        )
    assert "train_cfg" not in legacy().new  # no runner and nothing that needs one


# ---------------------------------------------------------------------- optimizer
def optim(**old) -> dict:
    return legacy(**old).new["optim_wrapper"]


def test_optimizer_grad_clip_accumulation_and_constructor() -> None:
    cfg = optim(optimizer_config=dict(grad_clip=dict(max_norm=35, norm_type=2)))
    assert cfg == dict(
        type="OptimWrapper", optimizer=OPTIMIZER, clip_grad=dict(max_norm=35, norm_type=2)
    )
    wrapper = build_optim_wrapper(nn.Linear(2, 2), cfg)
    assert type(wrapper) is OptimWrapper and wrapper.clip_grad_kwargs == dict(
        max_norm=35, norm_type=2
    )
    assert "clip_grad" not in optim(optimizer_config=dict(grad_clip=None))
    cfg = optim(optimizer_config=dict(type="GradientCumulativeOptimizerHook", cumulative_iters=4))
    assert cfg["accumulative_counts"] == 4 and cfg["type"] == "OptimWrapper"
    assert build_optim_wrapper(nn.Linear(2, 2), cfg)._accumulative_counts == 4
    cfg = optim(
        optimizer_config=dict(update_interval=8, grad_clip=None, coalesce=True)
    )  # MMSelfSup
    assert cfg["accumulative_counts"] == 8 and "coalesce" not in cfg
    opt = dict(
        OPTIMIZER,
        constructor="DefaultOptimizerConstructor",
        paramwise_cfg=dict(norm_decay_mult=0.0),
    )
    cfg = optim(optimizer=opt)
    assert cfg["constructor"] == "DefaultOptimWrapperConstructor" and cfg["optimizer"] == OPTIMIZER
    assert cfg["paramwise_cfg"] == dict(norm_decay_mult=0.0)
    build_optim_wrapper(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), cfg)
    assert (
        optim(optimizer=dict(OPTIMIZER, constructor="MyConstructor"))["constructor"]
        == "MyConstructor"
    )


def test_fp16_hooks_and_top_level_fp16() -> None:
    cfg = optim(optimizer_config=dict(type="Fp16OptimizerHook", loss_scale=512.0))
    assert cfg["type"] == "AmpOptimWrapper" and cfg["loss_scale"] == 512.0
    cfg = optim(
        optimizer_config=dict(type="GradientCumulativeFp16OptimizerHook", cumulative_iters=2)
    )
    assert (cfg["type"], cfg["loss_scale"], cfg["accumulative_counts"]) == (
        "AmpOptimWrapper",
        512.0,
        2,
    )
    assert (
        optim(optimizer_config=dict(), fp16=dict(loss_scale="dynamic"))["loss_scale"] == "dynamic"
    )
    assert optim(fp16=dict())["loss_scale"] == 512.0  # MMCV's Fp16OptimizerHook default
    legacy_scaler = dict(init_scale=512.0, mode="dynamic", scale_factor=2.0, scale_window=500)
    cfg = optim(optimizer_config=dict(grad_clip=None), fp16=dict(loss_scale=legacy_scaler))
    scale = dict(init_scale=512.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=500)
    assert cfg["loss_scale"] == scale
    torch.amp.GradScaler("cpu", **scale)  # what AmpOptimWrapper passes them to
    assert isinstance(build_optim_wrapper(nn.Linear(2, 2), cfg), AmpOptimWrapper)
    assert optim(fp16=dict(loss_scale=dict(mode="static", init_scale=128.0)))["loss_scale"] == 128.0
    with pytest.raises(ConfigError, match="keep one"):
        optim(
            optimizer_config=dict(type="Fp16OptimizerHook", loss_scale=64.0),
            fp16=dict(loss_scale=32.0),
        )


def test_optimizer_errors() -> None:
    with pytest.raises(
        ConfigError,
        match=r"optimizer_config\.type: .*did you mean 'Fp16OptimizerHook'.* supported: Optim",
    ):
        optim(optimizer_config=dict(type="FP16OptimizerHook"))
    with pytest.raises(
        ConfigError, match=r"optimizer_config\.cumulative_iters: unsupported key of OptimizerHook"
    ):
        optim(optimizer_config=dict(type="OptimizerHook", cumulative_iters=2))
    with pytest.raises(ConfigError, match="frozen_layers_cfg"):
        optim(optimizer_config=dict(frozen_layers_cfg=dict(prototypes=5005)))
    mmseg = dict(
        OPTIMIZER,
        constructor="LayerDecayOptimizerConstructor",
        paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.9),
    )
    with pytest.raises(
        ConfigError, match=r"optimizer\.constructor: LayerDecayOptimizerConstructor .*'num_layers'"
    ):
        optim(optimizer=mmseg)
    mmpretrain_keys = dict(
        OPTIMIZER,
        constructor="LearningRateDecayOptimizerConstructor",
        paramwise_cfg=dict(layer_decay_rate=0.65),
    )
    assert (
        optim(optimizer=mmpretrain_keys)["constructor"]
        == "LearningRateDecayOptimWrapperConstructor"
    )


def test_layer_decay_keys_follow_vistra() -> None:
    assert set(LAYER_DECAY_KEYS) == set(LearningRateDecayOptimWrapperConstructor.paramwise_keys)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), bn=nn.BatchNorm2d(4)))
        self.head = nn.Linear(4, 2)


def selfsup_groups(model: nn.Module, optimizer: dict, options: dict) -> dict[str, dict]:
    """MMSelfSup 0.x: every regex that re.search-es a name applies, in order; ``*_mult``
    multiplies the optimizer's value."""
    groups = {}
    for name, _ in model.named_parameters():
        group = {k: optimizer[k] for k in ("lr", "weight_decay", "momentum") if k in optimizer}
        for pattern, rule in options.items():
            if re.search(pattern, name):
                for key, value in rule.items():
                    if key.endswith("_mult"):
                        key, value = key[:-5], optimizer[key[:-5]] * value
                    group[key] = value
        groups[name] = group
    return groups


@pytest.mark.parametrize(
    "optimizer",
    [dict(OPTIMIZER), dict(type="AdamW", lr=1e-3)],  # AdamW: weight_decay left at its default
)
def test_paramwise_options_give_each_parameter_the_0x_settings(optimizer: dict) -> None:
    options = {
        "bn": dict(weight_decay=0.0),
        "head": dict(lr_mult=10.0, weight_decay_mult=0.5)
        if "weight_decay" in optimizer
        else dict(lr_mult=10.0),
        "conv": dict(lr=0.05, momentum_mult=0.5) if "momentum" in optimizer else dict(lr=5e-4),
    }
    ctx = legacy(optimizer=dict(optimizer, paramwise_options=options))
    assert any("only the longest key" in n for n in ctx.notes)
    model = Net()
    built = build_optim_wrapper(model, ctx.new["optim_wrapper"])
    expected = selfsup_groups(model, optimizer, options)
    for name, param in model.named_parameters():
        group = next(
            g for g in built.optimizer.param_groups if any(p is param for p in g["params"])
        )
        for key, value in expected[name].items():
            assert group[key] == pytest.approx(value, rel=1e-12), (name, key)
        if name.startswith("backbone.bn"):
            assert group["weight_decay"] == 0.0


def test_paramwise_options_regex_is_an_error() -> None:
    options = {r"(bn|gn)(\d+)?.(weight|bias)": dict(weight_decay=0.0, lars_exclude=True)}
    with pytest.raises(ConfigError) as err:
        legacy(optimizer=dict(OPTIMIZER, paramwise_options=options))
    assert "cfg.py: optimizer.paramwise_options['(bn|gn)" in str(err.value)
    assert "custom_keys" in str(err.value)
    with pytest.raises(ConfigError, match="multiplies optimizer.decay"):
        legacy(optimizer=dict(OPTIMIZER, paramwise_options={"bias": dict(decay_mult=0.0)}))
