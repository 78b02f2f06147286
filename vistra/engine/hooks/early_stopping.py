"""Stops training when a validation metric stops improving."""

from __future__ import annotations

import logging
import math
from typing import Any

from vistra.engine.hooks.checkpoint_hook import GREATER_KEYS, LESS_KEYS, infer_rule
from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS

logger = logging.getLogger("vistra")


@HOOKS.register_module()
class EarlyStoppingHook(Hook):
    """MMEngine's arguments: stop after ``patience`` validations without an improvement of
    at least ``min_delta`` in ``monitor``; ``stopping_threshold`` stops once reached."""

    priority = "LOWEST"

    def __init__(
        self,
        monitor: str,
        rule: str | None = None,
        min_delta: float = 0.1,
        strict: bool = False,
        check_finite: bool = True,
        patience: int = 5,
        stopping_threshold: float | None = None,
    ) -> None:
        self.monitor = monitor
        self.rule = rule or infer_rule(monitor, GREATER_KEYS, LESS_KEYS)
        if self.rule not in ("greater", "less"):
            raise ValueError(f"EarlyStoppingHook rule={rule!r}: use 'greater' or 'less'")
        self.min_delta = abs(min_delta)
        self.strict = strict
        self.check_finite = check_finite
        self.patience = patience
        self.stopping_threshold = stopping_threshold
        self.wait_count = 0
        self.best_score = -math.inf if self.rule == "greater" else math.inf

    def _better(self, a: float, b: float) -> bool:
        return a > b + self.min_delta if self.rule == "greater" else a < b - self.min_delta

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        metrics = metrics or {}
        if self.monitor not in metrics:
            if self.strict:
                raise KeyError(
                    f"EarlyStoppingHook monitor {self.monitor!r} not in metrics {sorted(metrics)}"
                )
            logger.warning("EarlyStoppingHook: %r is not among the metrics; skipped", self.monitor)
            return
        value = float(metrics[self.monitor])
        reason = ""
        if self.check_finite and not math.isfinite(value):
            reason = f"{self.monitor} is {value}"
        elif self.stopping_threshold is not None and (
            value >= self.stopping_threshold
            if self.rule == "greater"
            else value <= self.stopping_threshold
        ):
            reason = f"{self.monitor} reached the threshold {self.stopping_threshold}"
        if not reason:
            if self._better(value, self.best_score):
                self.best_score, self.wait_count = value, 0
            else:
                self.wait_count += 1
                if self.wait_count >= self.patience:
                    reason = f"{self.monitor} has not improved for {self.patience} validations (best {self.best_score:.4f})"
        if reason:
            runner.train_loop.stop_training = True
            logger.info("early stopping: %s", reason)
