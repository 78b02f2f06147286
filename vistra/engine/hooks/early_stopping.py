"""Stops training when a validation metric stops improving."""

from __future__ import annotations

import logging
import math
from typing import Any

from vistra.engine.hooks.checkpoint_hook import GREATER_KEYS, LESS_KEYS, infer_rule
from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS

logger = logging.getLogger("vistra")


def _compare(rule: str, a: float, b: float) -> bool:
    """MMEngine's comparison: strictly greater (or less) is better."""
    return a > b if rule == "greater" else a < b


@HOOKS.register_module()
class EarlyStoppingHook(Hook):
    """MMEngine's arguments and decisions: stop after ``patience`` validations without an
    improvement of at least ``min_delta`` in ``monitor`` (an improvement of exactly
    ``min_delta`` counts); stop at once when the value gets strictly past
    ``stopping_threshold``, or is not finite (``check_finite``). The rule is inferred from
    the name as the checkpoint hook does ('acc', 'top', ... greater; 'loss' less)."""

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
        if rule is not None and rule not in ("greater", "less"):
            raise ValueError(f"EarlyStoppingHook rule={rule!r}: use 'greater' or 'less'")
        self.monitor = monitor
        self.rule = rule or infer_rule(
            monitor, GREATER_KEYS, LESS_KEYS, "custom_hooks.EarlyStoppingHook"
        )
        # MMEngine flips the sign for 'less', so best + min_delta is the bar either way
        self.min_delta = min_delta if self.rule == "greater" else -min_delta
        self.strict = strict
        self.check_finite = check_finite
        self.patience = patience
        self.stopping_threshold = stopping_threshold
        self.wait_count = 0
        self.best_score = -math.inf if self.rule == "greater" else math.inf

    def before_run(self, runner: Any) -> None:
        if runner.train_loop is not None and not hasattr(runner.train_loop, "stop_training"):
            raise TypeError(
                f"EarlyStoppingHook needs a train loop with a stop_training flag; "
                f"{type(runner.train_loop).__name__} has none"
            )

    def _stop_reason(self, value: float) -> str:
        """Why training should stop now ('' to go on); updates the best score and count."""
        if self.check_finite and not math.isfinite(value):
            return (
                f"monitored metric {self.monitor} = {value} is not finite; "
                f"the best value was {self.best_score:.4f}"
            )
        if self.stopping_threshold is not None and _compare(
            self.rule, value, self.stopping_threshold
        ):
            self.best_score = value
            return (
                f"stopping threshold reached: {self.monitor} = {value} is {self.rule} "
                f"than {self.stopping_threshold}"
            )
        if _compare(self.rule, self.best_score + self.min_delta, value):  # no improvement
            self.wait_count += 1
            if self.wait_count >= self.patience:
                return (
                    f"{self.monitor} did not improve by {abs(self.min_delta)} in the last "
                    f"{self.wait_count} validations; best {self.best_score:.4f}"
                )
            return ""
        self.best_score, self.wait_count = value, 0
        return ""

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        metrics = metrics or {}
        if self.monitor not in metrics:
            if self.strict:
                raise RuntimeError(
                    f"EarlyStoppingHook monitor {self.monitor!r} is not among the metrics "
                    f"{sorted(metrics)}; fix monitor or set strict=False"
                )
            logger.warning(
                "EarlyStoppingHook: %r is not among the metrics %s; skipped",
                self.monitor,
                sorted(metrics),
            )
            return
        reason = self._stop_reason(float(metrics[self.monitor]))
        if reason:
            runner.train_loop.stop_training = True
            logger.info("early stopping: %s", reason)
