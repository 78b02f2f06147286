"""One-cycle, cosine-with-restarts and reduce-on-plateau schedules (MMEngine semantics).

Unlike the chainable schedules of ``schedulers``, the first two compute each value from
values stored at construction (the cycle's initial/max/min values, the base values), and
reduce-on-plateau moves only when the monitored validation metric stops improving.
Import them from ``vistra.engine.schedulers``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vistra.engine.schedulers_base import (
    INF,
    LRSchedulerMixin,
    MomentumSchedulerMixin,
    _ParamScheduler,
    logger,
    per_group_values,
)
from vistra.registry import PARAM_SCHEDULERS


# ---------------------------------------------------------------------- maths
def anneal_cos(start: float, end: float, pct: float) -> float:
    """Cosine from ``start`` (pct=0) to ``end`` (pct=1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def anneal_linear(start: float, end: float, pct: float) -> float:
    return (end - start) * pct + start


ANNEAL = {"cos": anneal_cos, "linear": anneal_linear}


def one_cycle_phases(
    total_steps: int, pct_start: float, three_phase: bool
) -> list[tuple[float, str, str]]:
    """``(last step, start key, end key)`` per phase; keys name the group's stored values."""
    up = float(pct_start * total_steps) - 1
    if three_phase:
        return [
            (up, "initial", "max"),
            (float(2 * pct_start * total_steps) - 2, "max", "initial"),
            (total_steps - 1, "initial", "min"),
        ]
    return [(up, "initial", "max"), (total_steps - 1, "max", "min")]


def one_cycle_value(
    step: int,
    phases: list[tuple[float, float, float]],
    anneal: Callable[[float, float, float], float],
) -> float:
    """The value at ``step`` given ``(last step, start value, end value)`` per phase."""
    start_step = 0.0
    for i, (end_step, start, end) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            return anneal(start, end, (step - start_step) / (end_step - start_step))
        start_step = end_step
    raise ValueError("one_cycle_value needs at least one phase")


def restart_period_index(step: int, cumulative_periods: Sequence[int]) -> int | None:
    """The index of the period that ``step`` falls in, or None after the last one."""
    for i, boundary in enumerate(cumulative_periods):
        if step < boundary:
            return i
    return None


def cosine_restart_step(
    value: float, eta_max: float, eta_min: float, step: int, period: int
) -> float:
    """One step of cosine annealing inside a restart period (``eta_max`` at its start)."""
    if step == 0:
        return eta_max
    ratio = (1 + math.cos(math.pi * step / period)) / (1 + math.cos(math.pi * (step - 1) / period))
    return ratio * (value - eta_min) + eta_min


def plateau_is_better(
    value: float, best: float, rule: str, threshold: float, threshold_rule: str
) -> bool:
    """Whether ``value`` improves on ``best`` by more than the threshold."""
    if rule == "less":
        return value < (best * (1.0 - threshold) if threshold_rule == "rel" else best - threshold)
    return value > (best * (1.0 + threshold) if threshold_rule == "rel" else best + threshold)


# ---------------------------------------------------------------------- schedulers
@PARAM_SCHEDULERS.register_module()
class OneCycleParamScheduler(_ParamScheduler):
    """The 1cycle policy: from ``eta_max / div_factor`` up to ``eta_max`` over ``pct_start`` of
    ``total_steps`` (default ``end - begin``), then down to ``initial / final_div_factor``
    (with ``three_phase``, back to the initial value first). Not chainable."""

    epoch_valued_args = ("total_steps",)

    def __init__(self, optimizer: Any, param_name: str, eta_max: float | Sequence[float], total_steps: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos", div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:  # fmt: skip
        name = type(self).__name__
        if total_steps is not None and (not isinstance(total_steps, int) or total_steps <= 0):
            raise ValueError(f"{name}: total_steps must be a positive int, got {total_steps!r}")
        if not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be between 0 and 1, got {pct_start}")
        if anneal_strategy not in ANNEAL:
            raise ValueError(
                f"{name}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        self.eta_max = eta_max
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        self.anneal_strategy = anneal_strategy
        self.total_steps = total_steps if total_steps is not None else end - begin
        self._schedule_phases = one_cycle_phases(self.total_steps, pct_start, three_phase)
        if last_step == -1:
            for group, peak in zip(
                optimizer.param_groups, per_group_values("eta_max", eta_max, optimizer, name)
            ):
                group[f"initial_{param_name}"] = peak / div_factor
                group[f"max_{param_name}"] = peak
                group[f"min_{param_name}"] = peak / div_factor / final_div_factor
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def _get_value(self) -> list[float]:
        if self.last_step > self.total_steps:
            raise ValueError(
                f"{type(self).__name__}: stepped {self.last_step + 1} times, past total_steps={self.total_steps}"
            )
        values = []
        for group in self.optimizer.param_groups:
            phases = [
                (end_step, group[f"{start}_{self.param_name}"], group[f"{end}_{self.param_name}"])
                for end_step, start, end in self._schedule_phases
            ]
            values.append(one_cycle_value(self.last_step, phases, ANNEAL[self.anneal_strategy]))
        return values


@PARAM_SCHEDULERS.register_module()
class CosineRestartParamScheduler(_ParamScheduler):
    """Cosine annealing restarted after each of ``periods``, each restart from
    ``base * restart_weights[i]``; the value is left alone after the last period."""

    epoch_valued_args = ("periods",)

    def __init__(self, optimizer: Any, param_name: str, periods: Sequence[int], restart_weights: Sequence[float] = (1,),
                 eta_min: float | None = None, eta_min_ratio: float | None = None, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:  # fmt: skip
        name = type(self).__name__
        if (eta_min is None) == (eta_min_ratio is None):
            raise ValueError(f"{name}: give exactly one of eta_min and eta_min_ratio")
        if len(periods) != len(restart_weights):
            raise ValueError(
                f"{name}: periods ({len(periods)}) and restart_weights ({len(restart_weights)}) must have the same length"
            )
        self.periods = list(periods)
        self.restart_weights = list(restart_weights)
        self.eta_min = eta_min
        self.eta_min_ratio = eta_min_ratio
        self.cumulative_periods = [sum(self.periods[: i + 1]) for i in range(len(self.periods))]
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def _get_value(self) -> list[float]:
        idx = restart_period_index(self.last_step, self.cumulative_periods)
        if idx is None:
            return self._current_values()
        step = self.last_step - (self.cumulative_periods[idx - 1] if idx > 0 else 0)
        values = []
        for value, base in zip(self._current_values(), self.base_values):
            eta_min = self.eta_min if self.eta_min_ratio is None else base * self.eta_min_ratio
            eta_max = base * self.restart_weights[idx]
            values.append(cosine_restart_step(value, eta_max, eta_min, step, self.periods[idx]))
        return values


@PARAM_SCHEDULERS.register_module()
class ReduceOnPlateauParamScheduler(_ParamScheduler):
    """Multiply by ``factor`` once ``monitor`` has not improved for more than ``patience``
    validations, then wait ``cooldown`` validations.

    ``step()`` (after each training epoch) only counts epochs for the ``begin``/``end``
    window; ``step(metrics)`` (after each validation) watches ``metrics[monitor]``.
    """

    need_val_args = True

    def __init__(self, optimizer: Any, param_name: str, monitor: str = "loss", rule: str = "less", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_rule: str = "rel", cooldown: int = 0,
                 min_value: float | Sequence[float] = 0.0, eps: float = 1e-8, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:  # fmt: skip
        name = type(self).__name__
        if not by_epoch:
            raise ValueError(f"{name} only supports by_epoch=True")
        if factor >= 1.0:
            raise ValueError(f"{name}: factor must be < 1.0, got {factor}")
        if rule not in ("less", "greater"):
            raise ValueError(f"{name}: rule must be 'less' or 'greater', got {rule!r}")
        if threshold_rule not in ("rel", "abs"):
            raise ValueError(
                f"{name}: threshold_rule must be 'rel' or 'abs', got {threshold_rule!r}"
            )
        if threshold < 0:
            raise ValueError(f"{name}: threshold must be >= 0, got {threshold}")
        self.monitor = monitor
        self.rule = rule
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_rule = threshold_rule
        self.cooldown = cooldown
        self.eps = eps
        self.min_values = per_group_values("min_value", min_value, optimizer, name)
        self.rule_worse = INF if rule == "less" else -INF
        self.best = self.rule_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args: Any, **kwargs: Any) -> _ParamScheduler:
        raise ValueError(
            f"{cls.__name__} follows validation metrics per epoch; it cannot be converted to iter-based"
        )

    def step(self, metrics: Mapping[str, Any] | None = None) -> None:  # type: ignore[override]
        """Without metrics: count a training epoch. With metrics: act on ``metrics[monitor]``."""
        if metrics is None:
            self._global_step += 1
        else:
            if not isinstance(metrics, Mapping):
                raise TypeError(
                    f"{type(self).__name__}.step(metrics) takes a dict of metrics, got {type(metrics).__name__}"
                )
            if self.begin <= self._global_step < self.end:
                self.last_step += 1
                self._observe(metrics)
        self._last_value = self._current_values()

    def _observe(self, metrics: Mapping[str, Any]) -> None:
        if self.monitor not in metrics:
            raise KeyError(
                f"{type(self).__name__} monitors {self.monitor!r}, which is not among the metrics {sorted(metrics)}"
            )
        value = float(metrics[self.monitor])
        if plateau_is_better(value, self.best, self.rule, self.threshold, self.threshold_rule):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during cooldown do not count
        if self.num_bad_epochs > self.patience:
            for i, (group, value) in enumerate(zip(self.optimizer.param_groups, self._get_value())):
                if group[self.param_name] - value > self.eps:
                    group[self.param_name] = value
                    if self.verbose:
                        logger.info(
                            "%s: %s of group %d reduced to %.4e",
                            type(self).__name__,
                            self.param_name,
                            i,
                            value,
                        )
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def _get_value(self) -> list[float]:
        return [
            max(float(v) * self.factor, low)
            for v, low in zip(self._current_values(), self.min_values)
        ]


# ---------------------------------------------------------------------- lr and momentum forms
@PARAM_SCHEDULERS.register_module()
class OneCycleLR(LRSchedulerMixin, OneCycleParamScheduler):
    """``OneCycleParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class CosineRestartLR(LRSchedulerMixin, CosineRestartParamScheduler):
    """``CosineRestartParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class ReduceOnPlateauLR(LRSchedulerMixin, ReduceOnPlateauParamScheduler):
    """``ReduceOnPlateauParamScheduler`` on ``lr``."""


@PARAM_SCHEDULERS.register_module()
class CosineRestartMomentum(MomentumSchedulerMixin, CosineRestartParamScheduler):
    """``CosineRestartParamScheduler`` on momentum."""


@PARAM_SCHEDULERS.register_module()
class ReduceOnPlateauMomentum(MomentumSchedulerMixin, ReduceOnPlateauParamScheduler):
    """``ReduceOnPlateauParamScheduler`` on momentum."""


__all__ = [
    "OneCycleParamScheduler", "CosineRestartParamScheduler", "ReduceOnPlateauParamScheduler",
    "OneCycleLR", "CosineRestartLR", "ReduceOnPlateauLR", "CosineRestartMomentum", "ReduceOnPlateauMomentum",
]  # fmt: skip
