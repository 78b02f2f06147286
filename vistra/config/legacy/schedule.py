"""0.x schedule keys -> 1.x: ``runner``/``total_*`` -> ``train_cfg``; ``optimizer``,
``optimizer_config``, ``fp16`` -> ``optim_wrapper``; ``lr_config``, ``momentum_config`` ->
``param_scheduler`` (the optimizer part lives in ``vistra.config.legacy.optimizer``).

Schedules follow MMEngine's migration guide: the main policy spans the run ``[0, max)`` and a
warm-up spans ``[0, warmup_iters)``. vistra's schedulers are MMEngine's chainable forms, so
the two compose. The warm-up is listed *after* the main scheduler so that it scales whatever
the main one set (CosineRestartLR sets its peak outright, which would undo a warm-up before it).

Granularity: an IterBasedRunner counts iterations (``by_epoch=False``); an epoch runner with
MMCV's ``by_epoch=True`` counts epochs; an epoch runner with ``by_epoch=False`` changed the lr
every iteration over ``max_epochs * iters_per_epoch``, so schedules relative to the run are
written in epochs with ``convert_to_iter_based=True`` (the same curve, as MMPretrain and
MMSelfSup 1.x configs do) while counts given in iterations (step milestones, restart periods)
stay ``by_epoch=False``.

Known differences from MMCV, measured by the tests: the guide's LinearLR/ConstantLR warm-ups
reach the full lr at ``warmup_iters - 1`` (MMCV: ``warmup_iters``); PolyLR and LinearLR reach
their end value at ``max - 1`` (MMCV: ``max``); with ``min_lr != 0`` a warm-up composed with a
decay differs slightly from MMCV's product ``regular * warmup``. The ``exp`` warm-up is exact:
MMCV's factor ``ratio ** (1 - t / warmup_iters)`` is ConstantLR(ratio) over the run times
ExponentialLR(ratio ** (-1 / warmup_iters)) over ``[0, warmup_iters]``; the guide's
ExponentialLR(gamma=ratio) would decay instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vistra.config.legacy.context import LegacyContext, unsupported
from vistra.config.legacy.optimizer import translate_optimizer

RUNNER_LOOPS = {
    "IterBasedRunner": ("IterBasedTrainLoop", "max_iters"),
    "EpochBasedRunner": ("EpochBasedTrainLoop", "max_epochs"),
}
# MMCV's <Policy>LrUpdaterHook arguments, beside the LrUpdaterHook ones (COMMON_KEYS).
LR_POLICIES: dict[str, tuple[str, ...]] = {
    "Fixed": (),
    "Step": ("step", "gamma", "min_lr"),
    "Exp": ("gamma",),
    "Poly": ("power", "min_lr"),
    "CosineAnnealing": ("min_lr", "min_lr_ratio"),
    "FlatCosineAnnealing": ("start_percent", "min_lr", "min_lr_ratio"),
    "CosineRestart": ("periods", "restart_weights", "min_lr", "min_lr_ratio"),
    "OneCycle": ("max_lr", "total_steps", "pct_start", "anneal_strategy", "div_factor",
                 "final_div_factor", "three_phase"),
    "LinearAnnealing": ("min_lr", "min_lr_ratio"),
    "StepFixCosineAnnealing": ("min_lr", "min_lr_ratio"),  # MMSelfSup 0.x
}  # fmt: skip
MOMENTUM_POLICIES: dict[str, tuple[str, ...]] = {
    "CosineAnnealing": ("min_momentum", "min_momentum_ratio"),
    "Step": ("step", "gamma", "min_momentum"),
}
WARMUP_KEYS = ("warmup", "warmup_iters", "warmup_ratio", "warmup_by_epoch")
COMMON_KEYS = ("policy", "by_epoch", *WARMUP_KEYS)
WARMUPS = ("constant", "linear", "exp")

_RUNNER_HINT = (
    "runner=dict(type='IterBasedRunner', max_iters=N) "
    "or runner=dict(type='EpochBasedRunner', max_epochs=N)"
)


def translate(ctx: LegacyContext) -> None:
    """Rewrite ``ctx.new``'s 0.x runner, optimizer and lr/momentum keys as 1.x keys."""
    run = _translate_runner(ctx)
    translate_optimizer(ctx)
    schedulers = [
        s for key in ("lr_config", "momentum_config") for s in _translate_policy(ctx, run, key)
    ]
    if schedulers:
        ctx.new["param_scheduler"] = schedulers


# ---------------------------------------------------------------------- runner -> train_cfg
@dataclass(frozen=True)
class _Run:
    iter_based: bool
    length: int  # max_iters or max_epochs


def _translate_runner(ctx: LegacyContext) -> _Run | None:
    runner = ctx.new.pop("runner", None)
    totals = {k: ctx.new.pop(k) for k in ("total_iters", "total_epochs") if k in ctx.new}
    source = "runner"
    if runner is None:  # the pre-runner top-level total_iters / total_epochs
        if len(totals) == 2:
            raise ctx.error("total_iters", "total_iters and total_epochs are both set; keep one")
        if not totals:
            if any(ctx.new.get(k) is not None for k in ("lr_config", "momentum_config")):
                raise ctx.error("runner", f"lr_config needs the run length: add {_RUNNER_HINT}")
            return None
        source, value = totals.popitem()
        runner = {"max_iters" if source == "total_iters" else "max_epochs": value}
    if not isinstance(runner, Mapping):
        raise ctx.error("runner", f"must be a dict such as {_RUNNER_HINT}, got {runner!r}")
    runner = dict(runner)
    kind = str(runner.pop("type", "")).split(".")[-1]
    lengths = {k: runner.pop(k) for k in ("max_iters", "max_epochs") if k in runner}
    if not kind and len(lengths) == 1:
        kind = "IterBasedRunner" if "max_iters" in lengths else "EpochBasedRunner"
    if kind not in RUNNER_LOOPS:
        raise unsupported(ctx, "runner.type", "runner", kind or None, RUNNER_LOOPS)
    loop, length_key = RUNNER_LOOPS[kind]
    length = lengths.get(length_key)
    if runner or set(lengths) != {length_key} or not isinstance(length, int) or length < 1:
        got = {**runner, **lengths}
        raise ctx.error(source, f"{kind} takes type and {length_key} (a positive int), got {got}")
    for key, value in totals.items():  # MMCV asserted that they agree with the runner
        if key != "total_" + length_key[4:] or value != length:
            raise ctx.error(
                key, f"{key}={value} disagrees with runner ({kind}, {length_key}={length})"
            )
    ctx.new["train_cfg"] = {"type": loop, length_key: length}
    ctx.note(
        f"{source} ({kind}, {length_key} {length}) -> train_cfg ({loop}, {length_key} {length})"
    )
    return _Run(kind == "IterBasedRunner", length)


# ------------------------------------------------------------------ lr/momentum -> param_scheduler
@dataclass(frozen=True)
class _Units:
    """How a scheduler counts: ``by_epoch`` as written, ``convert`` (convert_to_iter_based)
    and the run length in those units (None where only the runner will know it)."""

    by_epoch: bool
    convert: bool = False
    length: int | None = None

    def window(self, begin: float, end: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {"begin": begin} if end is None else {"begin": begin, "end": end}
        out["by_epoch"] = self.by_epoch
        if self.convert:
            out["convert_to_iter_based"] = True
        return out


@dataclass
class _Job:
    """One policy being translated: its arguments, the units of schedules relative to the
    run (``rel``) and of counts the user gave (``raw``), and the warm-up arguments."""

    ctx: LegacyContext
    key: str
    args: dict[str, Any]
    rel: _Units
    raw: _Units
    run: _Run
    warm: dict[str, Any]
    param: str  # 'LR' or 'Momentum'

    def error(self, name: str, message: str) -> Exception:
        return self.ctx.error(f"{self.key}.{name}", message)

    def eta(self) -> dict[str, Any]:
        """min_lr | min_lr_ratio (min_momentum | ...) -> eta_min | eta_min_ratio."""
        low = "min_lr" if self.param == "LR" else "min_momentum"
        given = [k for k in (low, f"{low}_ratio") if self.args.get(k) is not None]
        if len(given) != 1:
            raise self.error(low, f"give exactly one of {low} and {low}_ratio")
        return {"eta_min" if given[0] == low else "eta_min_ratio": self.args[given[0]]}

    def window(self, begin: float = 0, relative: bool = True) -> dict[str, Any]:
        """``[begin, run end)`` in the units of a schedule relative to the run, or of counts."""
        units = self.rel if relative else self.raw
        return units.window(begin, units.length)


def _translate_policy(ctx: LegacyContext, run: _Run | None, key: str) -> list[dict]:
    cfg = ctx.new.pop(key, None)
    if cfg is None:
        return []
    policies = LR_POLICIES if key == "lr_config" else MOMENTUM_POLICIES
    if not isinstance(cfg, Mapping) or "policy" not in cfg:
        raise ctx.error(f"{key}.policy", f"{key} must be a dict with a policy, got {cfg!r}")
    args = dict(cfg)
    given = str(args.pop("policy"))
    name = given.title() if given == given.lower() else given  # MMCV's rule: 'poly' -> 'Poly'
    if name not in policies:
        spellings = [p.lower() if p.lower().title() == p else p for p in policies]
        raise unsupported(ctx, f"{key}.policy", "policy", given, spellings)
    valid = COMMON_KEYS + policies[name]
    for arg in args:
        if arg not in valid:
            raise unsupported(ctx, f"{key}.{arg}", f"argument of the {name} policy", arg, valid)
    assert run is not None  # _translate_runner asks for a runner when there is a policy
    by_epoch = bool(args.pop("by_epoch", name != "OneCycle"))  # MMCV's defaults
    warm = {k: args.pop(k) for k in WARMUP_KEYS if k in args}
    if name == "Fixed" and warm.get("warmup") is None:
        ctx.note(f"{key} (Fixed) -> no param_scheduler: the value stays constant")
        return []
    rel, raw = _units(ctx, key, name, by_epoch, run)
    job = _Job(ctx, key, args, rel, raw, run, warm, "LR" if key == "lr_config" else "Momentum")
    main, warmup = BUILDERS[name](job), _warmup(job)
    described = "".join(f", {k} {v}" for k, v in cfg.items() if k != "policy")
    ctx.note(f"{key} ({name}{described}) -> param_scheduler [{_describe(main + warmup)}]")
    if warmup and any(s.get("eta_min") or s.get("eta_min_ratio") for s in main):
        ctx.note(
            f"{key}: the warm-up composes with a decay towards min_lr: MMCV multiplied the "
            "decayed lr by the warm-up factor, 1.x chains the two, which differs slightly "
            "(more so the larger min_lr is against the lr)"
        )
    return main + warmup


def _units(
    ctx: LegacyContext, key: str, name: str, by_epoch: bool, run: _Run
) -> tuple[_Units, _Units]:
    if name == "OneCycle" and by_epoch:
        raise ctx.error(f"{key}.by_epoch", "MMCV's OneCycle policy only supports by_epoch=False")
    if run.iter_based and by_epoch:
        raise ctx.error(
            f"{key}.by_epoch",
            "the runner is an IterBasedRunner: set by_epoch=False "
            "(MMCV's default by_epoch=True does not update the lr under it)",
        )
    if run.iter_based or by_epoch:
        units = _Units(by_epoch, length=run.length)
        return units, units
    return _Units(True, True, run.length), _Units(False)  # per iteration under an epoch runner


def _describe(schedulers: list[dict]) -> str:
    """``PolyLR 0..40000 iters, ...`` (epochs stepped per iteration: 'epochs, per iter')."""
    units = {(True, True): "epochs, per iter", (True, False): "epochs", (False, False): "iters"}
    return ", ".join(
        f"{s['type']} {s['begin']}..{s.get('end', 'end')} "
        + units[s["by_epoch"], s.get("convert_to_iter_based", False)]
        for s in schedulers
    )


# ---------------------------------------------------------------------- the policies
def _step(job: _Job) -> list[dict]:
    low = "min_lr" if job.param == "LR" else "min_momentum"
    if job.args.get(low) is not None:
        raise job.error(low, "the step policy's clamp has no 1.x equivalent; remove it")
    gamma = job.args.get("gamma", 0.1 if job.param == "LR" else 0.5)  # MMCV's defaults
    step, window = job.args.get("step"), job.window(relative=False)
    if isinstance(step, int) and step > 0:
        return [dict(type=f"Step{job.param}", step_size=step, gamma=gamma, **window)]
    if isinstance(step, (list, tuple)) and all(isinstance(s, int) and s > 0 for s in step):
        return [dict(type=f"MultiStep{job.param}", milestones=list(step), gamma=gamma, **window)]
    raise job.error("step", f"must be a positive int or a list of them, got {step!r}")


def _exp(job: _Job) -> list[dict]:
    if "gamma" not in job.args:
        raise job.error("gamma", "the exp policy needs gamma")
    return [dict(type="ExponentialLR", gamma=job.args["gamma"], **job.window(relative=False))]


def _poly(job: _Job) -> list[dict]:
    power, eta_min = job.args.get("power", 1.0), job.args.get("min_lr", 0.0)
    return [dict(type="PolyLR", power=power, eta_min=eta_min, **job.window())]


def _cosine(job: _Job, begin: float = 0) -> list[dict]:
    length = job.rel.length
    assert length is not None
    if begin >= length:
        return []  # flat to the end
    eta, window = job.eta(), job.window(begin)
    return [dict(type=f"CosineAnnealing{job.param}", T_max=length - begin, **eta, **window)]


def _flat_cosine(job: _Job) -> list[dict]:
    percent = job.args.get("start_percent", 0.75)
    if not isinstance(percent, (int, float)) or not 0 <= percent <= 1:
        raise job.error("start_percent", f"must be between 0 and 1, got {percent!r}")
    assert job.rel.length is not None
    start: float = job.rel.length * percent
    if not job.rel.convert:
        start = round(start)  # as MMCV, in the policy's own unit
    elif start == int(start):
        start = int(start)
    else:  # MMCV rounded iterations; the conversion truncates epochs * iters_per_epoch
        job.ctx.note(f"{job.key}: the cosine starts at epoch {start}, within an iteration of MMCV")
    return _cosine(job, start)


def _cosine_restart(job: _Job) -> list[dict]:
    periods, weights = job.args.get("periods"), list(job.args.get("restart_weights", [1]))
    if not isinstance(periods, (list, tuple)) or len(periods) != len(weights):
        raise job.error("periods", "must be a list as long as restart_weights (default [1])")
    eta = job.eta()
    if any(w != 1 for w in weights) and any(eta.values()):
        job.ctx.note(
            f"{job.key}: CosineRestartLR restarts from lr * weight where MMCV restarted "
            "from min_lr + weight * (lr - min_lr)"
        )
    cfg = dict(periods=list(periods), restart_weights=weights, **eta)
    return [dict(type="CosineRestartLR", **cfg, **job.window(relative=False))]


def _one_cycle(job: _Job) -> list[dict]:
    if job.warm.get("warmup") is not None:
        raise job.error("warmup", "OneCycle warms up by itself (pct_start); remove the warm-up")
    if "max_lr" not in job.args or isinstance(job.args["max_lr"], Mapping):
        raise job.error("max_lr", "OneCycle needs max_lr: a number or one per param group")
    keep = ("pct_start", "anneal_strategy", "div_factor", "final_div_factor", "three_phase")
    given = {k: job.args[k] for k in keep if k in job.args}
    cfg = dict(type="OneCycleLR", eta_max=job.args["max_lr"], **given)
    total, run = job.args.get("total_steps"), job.run
    if total is None:  # the run's iterations
        return [dict(cfg, **job.window())]
    if run.iter_based and total < run.length:
        raise job.error("total_steps", f"{total} is less than the run's {run.length} iterations")
    end = run.length if run.iter_based else total  # MMCV: total_steps >= the run's iterations
    return [dict(cfg, total_steps=total, **_Units(False).window(0, end))]


def _linear_annealing(job: _Job) -> list[dict]:
    eta = job.eta()
    factor = eta.get("eta_min_ratio")
    if factor is None:
        base = (job.ctx.old.get("optimizer") or {}).get("lr")
        if not base:
            raise job.error("min_lr", "needs optimizer.lr (LinearLR takes a factor of it)")
        factor = eta["eta_min"] / base
        job.ctx.note(
            f"{job.key}: LinearLR end_factor = min_lr / optimizer.lr = {factor:g}; "
            "param groups with another lr end at their lr times that factor"
        )
    if not 0 <= factor <= 1:
        raise job.error("min_lr", f"must not exceed the lr (end factor {factor})")
    return [dict(type="LinearLR", start_factor=1.0, end_factor=factor, **job.window())]


def _step_fix_cosine(job: _Job) -> list[dict]:
    """MMSelfSup 0.x: the cosine starts once the warm-up ends (progress - warm-up length)."""
    if job.warm.get("warmup") is None:
        return _cosine(job)
    if job.rel.by_epoch and not job.warm.get("warmup_by_epoch", False):
        raise job.error("warmup_by_epoch", "must be True for this policy under an epoch runner")
    return _cosine(job, job.warm.get("warmup_iters", 0))  # iterations, or epochs as the cosine


BUILDERS: dict[str, Callable[[_Job], list[dict]]] = {
    "Fixed": lambda job: [], "Step": _step, "Exp": _exp, "Poly": _poly, "CosineAnnealing": _cosine,
    "FlatCosineAnnealing": _flat_cosine, "CosineRestart": _cosine_restart, "OneCycle": _one_cycle,
    "LinearAnnealing": _linear_annealing, "StepFixCosineAnnealing": _step_fix_cosine,
}  # fmt: skip


def _warmup(job: _Job) -> list[dict]:
    kind = job.warm.get("warmup")
    if kind is None:
        return []
    if job.param != "LR":
        raise job.error("warmup", "a momentum warm-up has no 1.x equivalent")
    if kind not in WARMUPS:
        raise unsupported(job.ctx, f"{job.key}.warmup", "warm-up", kind, WARMUPS)
    iters, ratio = job.warm.get("warmup_iters", 0), job.warm.get("warmup_ratio", 0.1)
    if not isinstance(iters, int) or iters < 1:
        raise job.error("warmup_iters", f"must be a positive int, got {iters!r}")
    if not 0 < ratio <= 1:
        raise job.error("warmup_ratio", f"must be in (0, 1], got {ratio!r}")
    units, run = _Units(False), job.run
    if job.warm.get("warmup_by_epoch", False):
        if run.iter_based:
            raise job.error("warmup_by_epoch", "an IterBasedRunner counts iterations: set False")
        if kind == "exp":
            msg = "an exp warm-up needs its length in iterations: set False"
            raise job.error("warmup_by_epoch", msg)
        units = _Units(True, True)
    if kind == "linear":
        return [dict(type="LinearLR", start_factor=ratio, **units.window(0, iters))]
    if kind == "constant":
        return [dict(type="ConstantLR", factor=ratio, **units.window(0, iters))]
    # exp: ratio ** (1 - t / iters) = ratio * (ratio ** (-1 / iters)) ** t up to t = iters, then 1.
    # The ConstantLR ends past the run (it restores the lr on the step after its last one).
    whole = _Units(False) if run.iter_based else _Units(True, True)
    return [
        dict(type="ConstantLR", factor=ratio, **whole.window(0, run.length + 1)),
        dict(type="ExponentialLR", gamma=ratio ** (-1.0 / iters), **units.window(0, iters + 1)),
    ]
