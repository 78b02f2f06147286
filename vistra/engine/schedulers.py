"""Parameter schedulers with MMEngine's names and semantics, and ``build_param_schedulers``.

Every schedule comes in three registered forms: a generic ``*ParamScheduler`` (any
``param_name``), ``*LR`` and ``*Momentum``. Each step's value is computed from the current
one by the pure functions below (MMEngine's chainable forms), so that schedulers sharing a
parameter compose; run alone, each matches its closed form, e.g. cosine annealing
``eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2``. ``t`` below is the
scheduler's ``last_step``: 0 at ``begin``.

One-cycle, cosine-restart and reduce-on-plateau schedules live in ``schedulers_extra`` and
are re-exported here; the base class is in ``schedulers_base``.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from vistra.engine.schedulers_base import (
    INF,
    LRSchedulerMixin,
    MomentumSchedulerMixin,
    _ParamScheduler,
    scale_epoch_value,
)
from vistra.engine.schedulers_extra import (
    CosineRestartLR,
    CosineRestartMomentum,
    CosineRestartParamScheduler,
    OneCycleLR,
    OneCycleParamScheduler,
    ReduceOnPlateauLR,
    ReduceOnPlateauMomentum,
    ReduceOnPlateauParamScheduler,
)
from vistra.registry import PARAM_SCHEDULERS, RegistryError, check_arguments, did_you_mean


# ---------------------------------------------------------------------- maths (one step each)
def linear_step(value: float, t: int, total: int, start_factor: float, end_factor: float) -> float:
    """Factor going linearly from ``start_factor`` (t=0) to ``end_factor`` (t=total)."""
    if t == 0:
        return value * start_factor
    delta = end_factor - start_factor
    return value * (1.0 + delta / (total * start_factor + (t - 1) * delta))


def constant_step(value: float, t: int, total: int, factor: float) -> float:
    """``factor`` from t=0 until t=total, where the value is restored."""
    if t == 0:
        return value * factor
    return value / factor if t == total else value


def exponential_step(value: float, t: int, gamma: float) -> float:
    return value if t == 0 else value * gamma


def step_decay(value: float, t: int, step_size: int, gamma: float) -> float:
    return value * gamma if t != 0 and t % step_size == 0 else value


def multistep_decay(value: float, t: int, milestones: Mapping[int, int], gamma: float) -> float:
    """``gamma`` once per milestone equal to t (a repeated milestone decays repeatedly)."""
    return value * gamma ** milestones[t] if t in milestones else value


def cosine_annealing_step(value: float, base: float, t: int, T_max: float, eta_min: float) -> float:
    """SGDR's recursive cosine (period ``2 * T_max``) from the current value."""
    if t == 0:
        return value
    if (t - 1 - T_max) % (2 * T_max) == 0:
        return value + (base - eta_min) * (1 - math.cos(math.pi / T_max)) / 2
    ratio = (1 + math.cos(math.pi * t / T_max)) / (1 + math.cos(math.pi * (t - 1) / T_max))
    return ratio * (value - eta_min) + eta_min


def poly_step(value: float, t: int, total: int, power: float, eta_min: float) -> float:
    """Polynomial decay reaching ``eta_min`` at t = total; closed form
    ``(base - eta_min) * (1 - t / total) ** power + eta_min``."""
    if t == 0:
        return value
    return (value - eta_min) * (1 - 1 / (total - t + 1)) ** power + eta_min


# ---------------------------------------------------------------------- generic schedulers
def _check_factor(owner: str, name: str, factor: float) -> None:
    if not 0 <= factor <= 1:
        raise ValueError(f"{owner}: {name} must be between 0 and 1, got {factor}")


@PARAM_SCHEDULERS.register_module()
class StepParamScheduler(_ParamScheduler):
    """Multiply by ``gamma`` every ``step_size`` steps."""

    epoch_valued_args = ("step_size",)

    def __init__(self, optimizer: Any, param_name: str, step_size: int, gamma: float = 0.1, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:  # fmt: skip
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def _get_value(self) -> list[float]:
        return [
            step_decay(v, self.last_step, self.step_size, self.gamma)
            for v in self._current_values()
        ]


@PARAM_SCHEDULERS.register_module()
class MultiStepParamScheduler(_ParamScheduler):
    """Multiply by ``gamma`` at each of ``milestones`` (steps counted from ``begin``)."""

    epoch_valued_args = ("milestones",)

    def __init__(self, optimizer: Any, param_name: str, milestones: Sequence[int], gamma: float = 0.1,
                 last_step: int = -1, begin: int = 0, end: int = INF, by_epoch: bool = True,
                 verbose: bool = False) -> None:  # fmt: skip
        self.milestones = dict(Counter(milestones))  # a plain dict: checkpoints stay weights_only
        self.gamma = gamma
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def _get_value(self) -> list[float]:
        return [
            multistep_decay(v, self.last_step, self.milestones, self.gamma)
            for v in self._current_values()
        ]


@PARAM_SCHEDULERS.register_module()
class ConstantParamScheduler(_ParamScheduler):
    """Multiply by ``factor`` from ``begin`` until ``end - 1``, where the value is restored."""

    def __init__(self, optimizer: Any, param_name: str, factor: float = 1.0 / 3, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:  # fmt: skip
        _check_factor(type(self).__name__, "factor", factor)
        self.factor = factor
        self.total_iters = end - begin - 1
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def _get_value(self) -> list[float]:
        return [
            constant_step(v, self.last_step, self.total_iters, self.factor)
            for v in self._current_values()
        ]


@PARAM_SCHEDULERS.register_module()
class ExponentialParamScheduler(_ParamScheduler):
    """Multiply by ``gamma`` every step after ``begin``."""

    def __init__(self, optimizer: Any, param_name: str, gamma: float, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:  # fmt: skip
        self.gamma = gamma
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def _get_value(self) -> list[float]:
        return [exponential_step(v, self.last_step, self.gamma) for v in self._current_values()]


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingParamScheduler(_ParamScheduler):
    """Cosine from the current value to ``eta_min`` (or ``base * eta_min_ratio``) over
    ``T_max`` steps (default ``end - begin``)."""

    epoch_valued_args = ("T_max",)

    def __init__(self, optimizer: Any, param_name: str, T_max: int | None = None, eta_min: float | None = None,
                 begin: int = 0, end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False, eta_min_ratio: float | None = None) -> None:  # fmt: skip
        if eta_min is not None and eta_min_ratio is not None:
            raise ValueError(f"{type(self).__name__}: give eta_min or eta_min_ratio, not both")
        if eta_min is None and eta_min_ratio is None:
            eta_min = 0.0
        self.T_max = T_max or (end - begin)
        self.eta_min = eta_min
        self.eta_min_ratio = eta_min_ratio
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def _eta_min(self, base: float) -> float:
        return self.eta_min if self.eta_min_ratio is None else base * self.eta_min_ratio

    def _get_value(self) -> list[float]:
        return [
            cosine_annealing_step(v, base, self.last_step, self.T_max, self._eta_min(base))
            for v, base in zip(self._current_values(), self.base_values)
        ]


@PARAM_SCHEDULERS.register_module()
class LinearParamScheduler(_ParamScheduler):
    """Factor going linearly from ``start_factor`` at ``begin`` to ``end_factor`` at ``end - 1``."""

    def __init__(self, optimizer: Any, param_name: str, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 begin: int = 0, end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False) -> None:  # fmt: skip
        _check_factor(type(self).__name__, "start_factor", start_factor)
        _check_factor(type(self).__name__, "end_factor", end_factor)
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = end - begin - 1
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def _get_value(self) -> list[float]:
        return [
            linear_step(v, self.last_step, self.total_iters, self.start_factor, self.end_factor)
            for v in self._current_values()
        ]


@PARAM_SCHEDULERS.register_module()
class PolyParamScheduler(_ParamScheduler):
    """Polynomial decay of power ``power`` to ``eta_min``, reached at step ``end - 1``."""

    def __init__(self, optimizer: Any, param_name: str, eta_min: float = 0, power: float = 1.0, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:  # fmt: skip
        self.eta_min = eta_min
        self.power = power
        self.total_iters = end - begin - 1
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def _get_value(self) -> list[float]:
        return [
            poly_step(v, self.last_step, self.total_iters, self.power, self.eta_min)
            for v in self._current_values()
        ]


# ---------------------------------------------------------------------- lr and momentum forms
@PARAM_SCHEDULERS.register_module()
class StepLR(LRSchedulerMixin, StepParamScheduler):
    """``StepParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class MultiStepLR(LRSchedulerMixin, MultiStepParamScheduler):
    """``MultiStepParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class ConstantLR(LRSchedulerMixin, ConstantParamScheduler):
    """``ConstantParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class ExponentialLR(LRSchedulerMixin, ExponentialParamScheduler):
    """``ExponentialParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingLR(LRSchedulerMixin, CosineAnnealingParamScheduler):
    """``CosineAnnealingParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class LinearLR(LRSchedulerMixin, LinearParamScheduler):
    """``LinearParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class PolyLR(LRSchedulerMixin, PolyParamScheduler):
    """``PolyParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class StepMomentum(MomentumSchedulerMixin, StepParamScheduler):
    """``StepParamScheduler`` on momentum."""


@PARAM_SCHEDULERS.register_module()
class MultiStepMomentum(MomentumSchedulerMixin, MultiStepParamScheduler):
    """``MultiStepParamScheduler`` on momentum."""


@PARAM_SCHEDULERS.register_module()
class ConstantMomentum(MomentumSchedulerMixin, ConstantParamScheduler):
    """``ConstantParamScheduler`` on momentum."""


@PARAM_SCHEDULERS.register_module()
class ExponentialMomentum(MomentumSchedulerMixin, ExponentialParamScheduler):
    """``ExponentialParamScheduler`` on momentum."""


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingMomentum(MomentumSchedulerMixin, CosineAnnealingParamScheduler):
    """``CosineAnnealingParamScheduler`` on momentum."""


@PARAM_SCHEDULERS.register_module()
class LinearMomentum(MomentumSchedulerMixin, LinearParamScheduler):
    """``LinearParamScheduler`` on momentum."""


@PARAM_SCHEDULERS.register_module()
class PolyMomentum(MomentumSchedulerMixin, PolyParamScheduler):
    """``PolyParamScheduler`` on momentum."""


# ---------------------------------------------------------------------- building from config
def build_param_schedulers(
    cfgs: Mapping[str, Any] | Sequence[Mapping[str, Any] | _ParamScheduler] | _ParamScheduler,
    optim_wrapper: Any,
    epoch_length: int | None = None,
    *,
    max_epochs: int | None = None,
    max_iters: int | None = None,
) -> list[_ParamScheduler]:
    """Build a config's ``param_scheduler`` (a dict or a list, stepped in list order).

    As MMEngine's runner: ``by_epoch`` defaults to True; a missing ``end`` defaults to
    ``max_epochs`` (or ``max_iters`` for ``by_epoch=False``) when given;
    ``convert_to_iter_based=True`` rebuilds an epoch-based schedule per iteration and needs
    ``epoch_length`` (iterations per epoch). Already-built schedulers pass through.
    """
    items = [cfgs] if isinstance(cfgs, (Mapping, _ParamScheduler)) else list(cfgs)
    schedulers = []
    for i, cfg in enumerate(items):
        where = (
            f"param_scheduler[{i}]"
            if len(items) > 1 or not isinstance(cfgs, Mapping)
            else "param_scheduler"
        )
        if isinstance(cfg, _ParamScheduler):
            schedulers.append(cfg)
        elif isinstance(cfg, Mapping):
            schedulers.append(
                _build_one(dict(cfg), optim_wrapper, epoch_length, max_epochs, max_iters, where)
            )
        else:
            raise TypeError(
                f"{where} must be a dict or a built scheduler, got {type(cfg).__name__}"
            )
    return schedulers


def _build_one(cfg: dict, optim_wrapper: Any, epoch_length: int | None, max_epochs: int | None,
               max_iters: int | None, where: str) -> _ParamScheduler:  # fmt: skip
    cfg = copy.deepcopy(cfg)
    default_end = max_epochs if cfg.get("by_epoch", True) else max_iters
    if default_end is not None:
        cfg.setdefault("end", default_end)
    if not cfg.pop("convert_to_iter_based", False):
        return PARAM_SCHEDULERS.build(
            cfg, default_args=dict(optimizer=optim_wrapper), key_path=where
        )
    if epoch_length is None:
        raise ValueError(
            f"{where}: convert_to_iter_based=True needs the epoch length (iterations per epoch)"
        )
    if not cfg.get("by_epoch", True):
        raise ValueError(
            f"{where}: convert_to_iter_based=True only applies to by_epoch=True schedulers"
        )
    type_name = cfg.pop("type", None)
    cls = PARAM_SCHEDULERS.get(type_name) if isinstance(type_name, str) else type_name
    if cls is None:
        raise RegistryError(
            f"unknown parameter scheduler type {type_name!r} (config key '{where}').{did_you_mean(str(type_name), PARAM_SCHEDULERS.keys())}"
        )
    check_arguments(cls, cfg, str(type_name), where)
    return cls.build_iter_from_epoch(optimizer=optim_wrapper, epoch_length=epoch_length, **cfg)


__all__ = [
    "INF", "build_param_schedulers", "scale_epoch_value",
    "StepParamScheduler", "MultiStepParamScheduler", "ConstantParamScheduler", "ExponentialParamScheduler",
    "CosineAnnealingParamScheduler", "LinearParamScheduler", "PolyParamScheduler", "OneCycleParamScheduler",
    "CosineRestartParamScheduler", "ReduceOnPlateauParamScheduler",
    "StepLR", "MultiStepLR", "ConstantLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "PolyLR",
    "OneCycleLR", "CosineRestartLR", "ReduceOnPlateauLR",
    "StepMomentum", "MultiStepMomentum", "ConstantMomentum", "ExponentialMomentum", "CosineAnnealingMomentum",
    "LinearMomentum", "PolyMomentum", "CosineRestartMomentum", "ReduceOnPlateauMomentum",
]  # fmt: skip

from vistra.engine import weight_decay_schedulers  # noqa: E402,F401  (registration; imports this module)
