"""Times each iteration (data wait and total) and estimates the time left."""

from __future__ import annotations

import time
from typing import Any

from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS


@HOOKS.register_module()
class IterTimerHook(Hook):
    """``train/data_time``: waiting for the batch; ``train/time``: the whole iteration.
    The ETA is the mean iteration time since the (re)start times the iterations left."""

    priority = "NORMAL"

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._start_iter: int | None = None
        self._total = 0.0

    def _tick(self) -> None:
        self._last = time.perf_counter()

    def before_train(self, runner: Any) -> None:
        self._start_iter = runner.iter
        self._total = 0.0

    def before_train_epoch(self, runner: Any) -> None:
        self._tick()

    def before_val_epoch(self, runner: Any) -> None:
        self._tick()

    def before_test_epoch(self, runner: Any) -> None:
        self._tick()

    def _before_iter(self, runner: Any, mode: str) -> None:
        runner.message_hub.update_scalar(f"{mode}/data_time", time.perf_counter() - self._last)

    def _after_iter(self, runner: Any, mode: str) -> float:
        now = time.perf_counter()
        elapsed = now - self._last
        self._last = now
        runner.message_hub.update_scalar(f"{mode}/time", elapsed)
        return elapsed

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        self._before_iter(runner, "train")

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        self._total += self._after_iter(runner, "train")
        done = runner.iter - (self._start_iter or 0) + 1
        left = runner.max_iters - runner.iter - 1
        runner.message_hub.update_info("eta", self._total / max(done, 1) * left)

    def before_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        self._before_iter(runner, "val")

    def after_val_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        self._after_iter(runner, "val")

    def before_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        self._before_iter(runner, "test")

    def after_test_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        self._after_iter(runner, "test")
