"""Writes log lines, ``scalars.json``/TensorBoard scalars, the test metrics JSON and
the training-curve PNG; shows a progress bar when stdout is a terminal."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS

logger = logging.getLogger("vistra")


class _ProgressBar:
    """A rich progress bar with ETA on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._progress = None
        self._task = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeRemainingColumn(),
                transient=True,
            )

    def start(self, description: str, total: int, completed: int = 0) -> None:
        if self._progress is None:
            return
        self._progress.start()
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=total, completed=completed)

    def advance(self, completed: int | None = None) -> None:
        if self._progress is not None and self._task is not None:
            if completed is None:
                self._progress.advance(self._task)
            else:
                self._progress.update(self._task, completed=completed)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._task = None


@HOOKS.register_module()
class LoggerHook(Hook):
    """MMEngine's LoggerHook arguments; the line format is MMEngine's (see engine/logging.py).

    Log lines go to the console and ``<work_dir>/<timestamp>/<timestamp>.log``; every logged
    step goes to the visualizer's backends (``vis_data/scalars.json``, TensorBoard);
    validation also redraws ``vis_data/curves.png``; testing writes ``<timestamp>.json``.
    """

    priority = "BELOW_NORMAL"

    def __init__(
        self,
        interval: int = 10,
        ignore_last: bool = True,
        interval_exp_name: int = 1000,
        out_dir: str | None = None,
        out_suffix: str | tuple = (".json", ".log", ".py", "yaml"),
        keep_local: bool = True,
        file_client_args: dict | None = None,
        log_metric_by_epoch: bool = True,
        backend_args: dict | None = None,
        progress_bar: bool | None = None,
        draw_curves: bool = True,
    ) -> None:
        if interval < 1:
            raise ValueError(f"default_hooks.logger.interval must be >= 1, got {interval}")
        self.interval = interval
        self.ignore_last = ignore_last
        self.interval_exp_name = interval_exp_name
        self.log_metric_by_epoch = log_metric_by_epoch
        self.progress_bar = progress_bar
        self.draw_curves = draw_curves
        self._bar = _ProgressBar(False)

    # ------------------------------------------------------------------ train
    def before_train(self, runner: Any) -> None:
        enabled = self.progress_bar if self.progress_bar is not None else sys.stdout.isatty()
        self._bar = _ProgressBar(bool(enabled) and runner.rank == 0)

    def before_train_epoch(self, runner: Any) -> None:
        loop = runner.train_loop
        if runner.log_processor.by_epoch:
            self._bar.start(
                f"epoch {runner.epoch + 1}/{runner.max_epochs}",
                len(loop.dataloader),
                loop._resume_batch,
            )
        elif runner.iter == loop.iter and self._bar._task is None:
            self._bar.start("train", runner.max_iters, runner.iter)

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        self._bar.advance()
        epoch_len = len(runner.train_loop.dataloader)
        end_of_epoch = runner.log_processor.by_epoch and batch_idx + 1 == epoch_len
        if not (
            self.every_n_inner_iters(batch_idx, self.interval)
            if runner.log_processor.by_epoch
            else self.every_n_train_iters(runner, self.interval)
        ):
            if not (end_of_epoch and not self.ignore_last):
                return
        tags = runner.log_processor.train_tags(runner.message_hub, epoch_len)
        memory = _memory_mb(runner.device)
        line = runner.log_processor.format_train(
            tags,
            epoch=runner.epoch,
            batch_idx=batch_idx,
            epoch_len=epoch_len,
            iteration=runner.iter,
            max_epochs=runner.max_epochs,
            max_iters=runner.max_iters,
            eta_s=runner.message_hub.get_info("eta"),
            memory_mb=memory,
        )
        logger.info(line)
        scalars = dict(tags)
        if memory is not None:
            scalars["memory"] = memory
        scalars.update(
            epoch=runner.epoch + 1 if runner.log_processor.by_epoch else 0, iter=runner.iter + 1
        )
        runner.visualizer.add_scalars(scalars, step=runner.iter + 1)

    def after_train(self, runner: Any) -> None:
        self._bar.stop()

    def after_run(self, runner: Any) -> None:
        # As MMEngine: the run is over, so the backends close their files (TensorBoard's
        # writer thread and event file); a later write opens them again.
        runner.visualizer.close()

    # ------------------------------------------------------------------ val / test
    def _eval_extra(self, runner: Any, mode: str) -> dict[str, float]:
        extra = {}
        for name in ("data_time", "time"):
            key = f"{mode}/{name}"
            if key in runner.message_hub.log_scalars:
                extra[name] = runner.message_hub.get_scalar(key).mean()
        return extra

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        metrics = metrics or {}
        by_epoch = runner.log_processor.by_epoch
        n = len(runner.val_loop.dataloader)
        line = runner.log_processor.format_eval(
            "val",
            metrics,
            epoch=runner.epoch,
            batch_idx=n - 1,
            epoch_len=n,
            extra=self._eval_extra(runner, "val"),
        )
        logger.info(line)
        _log_tables(metrics)
        step = runner.epoch if (by_epoch and self.log_metric_by_epoch) else runner.iter
        scalars = {k: v for k, v in metrics.items() if _scalar(v)}
        scalars.update(self._eval_extra(runner, "val"))
        runner.visualizer.add_scalars(scalars, step=step)
        if self.draw_curves and runner.rank == 0:
            runner.draw_curves()

    def after_test_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        metrics = metrics or {}
        n = len(runner.test_loop.dataloader)
        line = runner.log_processor.format_eval(
            "test",
            metrics,
            epoch=None,
            batch_idx=n - 1,
            epoch_len=n,
            extra=self._eval_extra(runner, "test"),
        )
        logger.info(line)
        _log_tables(metrics)
        if runner.rank == 0:
            record = dict(metrics)
            per_class = _per_class_results(runner.test_loop.evaluator)
            if per_class:
                record["per_class"] = per_class
            out = Path(runner.log_dir) / f"{runner.timestamp}.json"
            out.write_text(json.dumps(_jsonable(record), indent=2) + "\n")
            logger.info("test metrics written to %s", out)


def _per_class_results(evaluator: Any) -> dict[str, Any]:
    """Per-class tables that metrics such as IoUMetric keep (``classwise_results``)."""
    out: dict[str, Any] = {}
    for metric in getattr(evaluator, "metrics", []):
        table = getattr(metric, "classwise_results", None)
        if table:
            out.update(table)
    return out


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _log_tables(metrics: dict[str, Any]) -> None:
    # Metrics may carry a per-class table (e.g. IoUMetric); print it after the line.
    for key, value in metrics.items():
        if isinstance(value, str) and "\n" in value:
            logger.info("%s:\n%s", key, value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return value


def _memory_mb(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device) / 1024 / 1024)
