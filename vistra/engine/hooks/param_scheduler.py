"""Steps the parameter schedulers: per iteration or per epoch, as each one says."""

from __future__ import annotations

from typing import Any

from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS


def _all_schedulers(runner: Any) -> list:
    schedulers = runner.param_schedulers or []
    if isinstance(schedulers, dict):  # one list per optimizer
        return [s for group in schedulers.values() for s in group]
    return list(schedulers)


def _needs_metrics(scheduler: Any) -> bool:
    return bool(getattr(scheduler, "need_val_args", False))


@HOOKS.register_module()
class ParamSchedulerHook(Hook):
    """Iteration-based schedulers step after every iteration, epoch-based ones after every
    epoch, and ReduceOnPlateau-style ones after validation with the metrics."""

    priority = "LOW"

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        for scheduler in _all_schedulers(runner):
            if not scheduler.by_epoch and not _needs_metrics(scheduler):
                scheduler.step()

    def after_train_epoch(self, runner: Any) -> None:
        # ReduceOnPlateau-style schedulers count epochs with a plain step() too (MMEngine)
        for scheduler in _all_schedulers(runner):
            if scheduler.by_epoch:
                scheduler.step()

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        for scheduler in _all_schedulers(runner):
            if _needs_metrics(scheduler) and metrics:
                scheduler.step(metrics)
