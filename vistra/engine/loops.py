"""Training and evaluation loops.

The whole training step is :func:`train_step`, read top to bottom: preprocess, forward,
sum the losses, then ``OptimWrapper.update_params`` (backward, clip, step, zero_grad).
Loops only order steps and call hooks at the points listed in ``hooks/hook.py``.

Counters follow MMEngine so that ported hooks see what they expect: ``runner.iter`` and
``runner.epoch`` count *completed* iterations/epochs and are incremented after the
``after_train_iter``/``after_train_epoch`` hooks. ``loop_state()`` gives the position a
checkpoint taken at the current hook point resumes from, so a resumed run neither repeats
nor skips a batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import torch

from vistra.dist.model_wrap import unwrap
from vistra.engine.failures import NonFiniteLossError, all_finite, explain, non_finite_message
from vistra.models.base import parse_losses
from vistra.registry import LOOPS

if TYPE_CHECKING:
    from vistra.engine.runner import Runner

logger = logging.getLogger("vistra")


def train_step(
    model: torch.nn.Module,
    data_batch: dict,
    optim_wrapper: Any,
    nonfinite_loss: str = "stop",
    where: str = "train step",
) -> dict[str, float]:
    """One optimisation step on one batch; returns the values to log.

    A NaN/Inf loss raises :class:`NonFiniteLossError` before backward, so the weights and
    the last checkpoint stay as they were; with ``nonfinite_loss='skip'`` the step is
    skipped instead (nothing logged, no update), as AMP's loss scaler skips overflows.
    """
    core = unwrap(model)
    if hasattr(core, "train_step"):  # e.g. several optimizers or a momentum encoder
        log_vars = core.train_step(data_batch, optim_wrapper)
        if not math.isfinite(log_vars.get("loss", 0.0)):  # after its update: stop only
            raise NonFiniteLossError(non_finite_message(log_vars, where, data_batch))
        return log_vars
    # autocast for AMP; DDP's no_sync() on accumulation steps that do not update
    with optim_wrapper.optim_context(model):
        data = core.data_preprocessor(data_batch, training=True)
        losses = model(**data, mode="loss")  # through the DDP wrapper, so gradients sync
    loss, log_vars = parse_losses(losses)
    if not all_finite(loss):
        if nonfinite_loss != "skip":
            raise NonFiniteLossError(non_finite_message(log_vars, where, data_batch))
        logger.warning("%s: skipped, the loss is %s", where, log_vars.get("loss"))
        optim_wrapper.zero_grad()
        return {}
    optim_wrapper.update_params(loss)  # backward, clip, optimizer.step(), zero_grad
    return log_vars


def _raise_explained(
    exc: Exception, where: str, model: Any, data_batch: Any, loader: Any = None
) -> NoReturn:
    """Raise ``exc`` as the one-line error a user reads (failures.py), chained to it; called
    in the ``except`` block that caught ``exc``."""
    error = explain(exc, where, model, data_batch, loader)
    if error is exc:
        raise exc
    raise error from exc


def _fetched(
    batches: Iterator[dict] | Any,
    where: Callable[[], str],
    model: Any,
    live: Callable[[], Any] | None = None,
) -> Iterator:
    """The batches of ``batches``; a failure to load one names the iteration it was for.
    ``live`` gives the DataLoader iterator in use when ``batches`` is a generator over it
    (so a dead worker's signal can be read from its processes)."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            loader = live() if live is not None else iterator
            _raise_explained(exc, f"{where()} (loading data)", model, None, loader)
        yield batch


class _TrainLoop:
    """What the two train loops share: counters, validation schedule, resume position."""

    def __init__(
        self,
        runner: Runner,
        dataloader: Any,
        val_begin: int = 1,
        val_interval: int = 1,
        dynamic_intervals: list[tuple[int, int]] | None = None,
        nonfinite_loss: str = "stop",
    ) -> None:
        if nonfinite_loss not in ("stop", "skip"):
            raise ValueError(
                f"train_cfg.nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}"
            )
        self.nonfinite_loss = nonfinite_loss
        self.runner = runner
        self.dataloader = dataloader
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.dynamic_milestones, self.dynamic_intervals = _split_dynamic(
            dynamic_intervals, val_interval
        )
        self._epoch = 0
        self._iter = 0
        self._batch_in_epoch = 0  # batches of the current data epoch already trained on
        self._resume_batch = 0
        self._phase = ""  # 'after_iter' / 'after_epoch' while those hooks run
        self.val_due = False  # decided before the after_* hooks, so hooks can see it
        self.stop_training = False

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def iter(self) -> int:
        return self._iter

    def _decide_current_val_interval(self, progress: int) -> None:
        # MMEngine: bisect(milestones, completed + 1), i.e. a milestone applies from the
        # validation just before it
        progress += 1
        for milestone, interval in zip(self.dynamic_milestones, self.dynamic_intervals):
            if progress >= milestone:
                self.val_interval = interval

    def _validates_at(self, completed: int, last: int) -> bool:
        """MMEngine's rule: validate at ``val_begin`` and every ``val_interval`` after, and
        at the end. ``completed`` counts epochs or iterations, as the loop does."""
        self._decide_current_val_interval(completed)
        return (
            self.runner.val_loop is not None
            and completed >= self.val_begin
            and (completed % self.val_interval == 0 or completed == last)
        )

    def _val_due_after_iter(self) -> bool:
        return False

    def _run_iter(self, batch_idx: int, data_batch: dict) -> None:
        runner = self.runner
        n = self._iter + 1
        runner.call_hook("before_train_iter", batch_idx=batch_idx, data_batch=data_batch)
        runner.watchdog.mark(f"train iter {n}: forward, backward, gradient all-reduce")
        where = f"train iter {n}"
        try:
            outputs = train_step(
                runner.model, data_batch, runner.optim_wrapper, self.nonfinite_loss, where
            )
        except Exception as exc:
            _raise_explained(exc, where, runner.model, data_batch)
        runner.watchdog.mark(f"train iter {n}: after-iteration hooks")
        self._batch_in_epoch += 1
        self.val_due = self._val_due_after_iter()
        self._phase = "after_iter"
        runner.call_hook(
            "after_train_iter", batch_idx=batch_idx, data_batch=data_batch, outputs=outputs
        )
        self._phase = ""
        self._iter += 1
        runner.watchdog.mark(f"train iter {n}: stop-signal all-reduce")
        if runner.stop_requested():
            runner.save_stop_checkpoint()
            self.stop_training = True
        runner.watchdog.mark(f"train iter {n + 1}: loading data")

    def loop_state(self) -> dict[str, int]:
        """The position a checkpoint written *now* resumes from."""
        done_iter = self._iter + (1 if self._phase == "after_iter" else 0)
        done_epoch = self._epoch + (1 if self._phase == "after_epoch" else 0)
        batch = 0 if self._phase == "after_epoch" else self._batch_in_epoch
        return {
            "epoch": done_epoch,
            "iter": done_iter,
            "batch_in_epoch": batch,
            "batch_size": int(getattr(self.dataloader, "batch_size", 0) or 0),
            "world_size": self.runner.world_size,
        }

    def load_loop_state(self, state: dict[str, int]) -> None:
        self._epoch, self._iter = int(state["epoch"]), int(state["iter"])
        batch = int(state.get("batch_in_epoch", 0))
        same_shape = (
            state.get("batch_size") == (getattr(self.dataloader, "batch_size", 0) or 0)
            and state.get("world_size") == self.runner.world_size
        )
        if batch and not same_shape:
            warnings.warn(
                "batch size or world size changed since the checkpoint; the interrupted data epoch "
                "restarts from its beginning, so some batches are seen twice",
                stacklevel=2,
            )
            batch = 0
        self._resume_batch = batch


def _split_dynamic(
    dynamic: list[tuple[int, int]] | None, interval: int
) -> tuple[list[int], list[int]]:
    """MMEngine's ``dynamic_intervals=[(milestone, interval), ...]`` as two sorted lists."""
    if not dynamic:
        return [0], [interval]
    pairs = sorted((int(m), int(i)) for m, i in dynamic)
    return [0] + [m for m, _ in pairs], [interval] + [i for _, i in pairs]


@LOOPS.register_module()
class EpochBasedTrainLoop(_TrainLoop):
    """Train for ``max_epochs`` passes over the data, validating every ``val_interval``."""

    def __init__(
        self,
        runner: Runner,
        dataloader: Any,
        max_epochs: int,
        val_begin: int = 1,
        val_interval: int = 1,
        dynamic_intervals: list[tuple[int, int]] | None = None,
        nonfinite_loss: str = "stop",
    ) -> None:
        super().__init__(
            runner, dataloader, val_begin, val_interval, dynamic_intervals, nonfinite_loss
        )
        if int(max_epochs) != max_epochs or max_epochs < 1:
            raise ValueError(f"train_cfg.max_epochs must be a positive integer, got {max_epochs!r}")
        self._max_epochs = int(max_epochs)
        self._max_iters = self._max_epochs * len(dataloader)

    @property
    def max_epochs(self) -> int:
        return self._max_epochs

    @property
    def max_iters(self) -> int:
        return self._max_iters

    def run(self) -> torch.nn.Module:
        runner = self.runner
        runner.call_hook("before_train")
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            if self.stop_training:
                break
            if self.val_due:
                runner.val_loop.run()
                self.val_due = False
        runner.call_hook("after_train")
        return runner.model

    def run_epoch(self) -> None:
        runner = self.runner
        runner.call_hook("before_train_epoch")  # the sampler-seed hook sets the data epoch
        runner.model.train()
        start, self._resume_batch = self._resume_batch, 0
        self._batch_in_epoch = start
        _skip_batches(self.dataloader, start)
        batches = _fetched(self.dataloader, lambda: f"train iter {self._iter + 1}", runner.model)
        for batch_idx, data_batch in enumerate(batches, start):
            self._run_iter(batch_idx, data_batch)
            if self.stop_training:
                return
        self.val_due = self._validates_at(self._epoch + 1, self._max_epochs)
        self._phase = "after_epoch"
        runner.call_hook("after_train_epoch")
        self._phase = ""
        self._epoch += 1
        self._batch_in_epoch = 0


@LOOPS.register_module()
class IterBasedTrainLoop(_TrainLoop):
    """Train for ``max_iters`` batches drawn from an endless stream, validating every
    ``val_interval`` iterations."""

    def __init__(
        self,
        runner: Runner,
        dataloader: Any,
        max_iters: int,
        val_begin: int = 1,
        val_interval: int = 1000,
        dynamic_intervals: list[tuple[int, int]] | None = None,
        nonfinite_loss: str = "stop",
    ) -> None:
        super().__init__(
            runner, dataloader, val_begin, val_interval, dynamic_intervals, nonfinite_loss
        )
        if int(max_iters) != max_iters or max_iters < 1:
            raise ValueError(f"train_cfg.max_iters must be a positive integer, got {max_iters!r}")
        self._max_iters = int(max_iters)
        self._data_epoch = 0  # passes completed over a finite sampler (DefaultSampler)

    @property
    def max_epochs(self) -> int:
        return 1

    @property
    def max_iters(self) -> int:
        return self._max_iters

    def _val_due_after_iter(self) -> bool:
        return self._validates_at(self._iter + 1, self._max_iters)

    def loop_state(self) -> dict[str, int]:
        return {**super().loop_state(), "data_epoch": self._data_epoch}

    def load_loop_state(self, state: dict[str, int]) -> None:
        super().load_loop_state(state)
        self._data_epoch = int(state.get("data_epoch", 0))

    def _batches(self) -> Iterator[dict]:
        """Batches forever; a finite sampler is restarted with the next data epoch."""
        start, self._resume_batch = self._resume_batch, 0
        while True:
            sampler = getattr(self.dataloader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self._data_epoch)
            self._batch_in_epoch = start
            _skip_batches(self.dataloader, start)
            start = 0
            self._live_iterator = iter(self.dataloader)
            yield from self._live_iterator
            self._data_epoch += 1

    def run(self) -> torch.nn.Module:
        runner = self.runner
        runner.call_hook("before_train")
        runner.call_hook("before_train_epoch")
        batches = _fetched(
            self._batches(),
            lambda: f"train iter {self._iter + 1}",
            runner.model,
            live=lambda: getattr(self, "_live_iterator", None),
        )
        while self._iter < self._max_iters and not self.stop_training:
            runner.model.train()
            self._run_iter(self._iter, next(batches))
            if self.stop_training:
                break
            if self.val_due:
                runner.val_loop.run()
                self.val_due = False
        runner.call_hook("after_train_epoch")
        runner.call_hook("after_train")
        return runner.model


def _skip_batches(dataloader: Any, batches: int) -> None:
    """Make the next pass start ``batches`` batches in, by moving the sampler (no replay)."""
    if batches <= 0:
        return
    sampler = getattr(dataloader, "sampler", None)
    batch_size = getattr(dataloader, "batch_size", None)
    if not hasattr(sampler, "set_start") or not batch_size:
        raise RuntimeError(
            "cannot resume mid-epoch: the train dataloader needs a vistra sampler "
            "(DefaultSampler or InfiniteSampler) and a fixed batch_size"
        )
    sampler.set_start(batches * batch_size)


class _EvalLoop:
    """Run the model in predict mode over a dataloader and feed the evaluator."""

    mode = "val"

    def __init__(self, runner: Runner, dataloader: Any, evaluator: Any, fp16: bool = False) -> None:
        self.runner = runner
        self.dataloader = dataloader
        self.evaluator = evaluator
        self.fp16 = fp16
        meta = getattr(getattr(dataloader, "dataset", None), "metainfo", None)
        if meta is not None and hasattr(evaluator, "dataset_meta"):
            evaluator.dataset_meta = meta

    def run(self) -> dict[str, Any]:
        runner, mode = self.runner, self.mode
        runner.call_hook(f"before_{mode}")
        runner.call_hook(f"before_{mode}_epoch")
        runner.model.eval()
        runner.watchdog.mark(f"{mode} batch 0: loading data")
        self._batch = 0
        where = lambda: f"{mode} batch {self._batch}"  # noqa: E731 - read when it fails
        for batch_idx, data_batch in enumerate(_fetched(self.dataloader, where, runner.model)):
            runner.watchdog.mark(f"{mode} batch {batch_idx}: predict")
            try:
                self.run_iter(batch_idx, data_batch)
            except Exception as exc:
                _raise_explained(exc, where(), runner.model, data_batch)
            self._batch = batch_idx + 1
            runner.watchdog.mark(f"{mode} batch {batch_idx + 1}: loading data")
        with runner.watchdog.busy(f"{mode}: gathering results and computing metrics"):
            metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        runner.call_hook(f"after_{mode}_epoch", metrics=metrics)
        runner.call_hook(f"after_{mode}")
        return metrics

    @torch.no_grad()
    def run_iter(self, batch_idx: int, data_batch: dict) -> None:
        runner, mode = self.runner, self.mode
        runner.call_hook(f"before_{mode}_iter", batch_idx=batch_idx, data_batch=data_batch)
        with self._autocast():
            outputs = unwrap(runner.model).val_step(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        runner.call_hook(
            f"after_{mode}_iter", batch_idx=batch_idx, data_batch=data_batch, outputs=outputs
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.fp16:
            return contextlib.nullcontext()
        device = self.runner.device.type
        dtype = torch.float16 if device == "cuda" else torch.bfloat16
        return torch.autocast(device_type=device, dtype=dtype)


@LOOPS.register_module()
class ValLoop(_EvalLoop):
    """Validation: ``before_val`` ... ``after_val_epoch(metrics)`` ... ``after_val``."""

    mode = "val"


@LOOPS.register_module()
class TestLoop(_EvalLoop):
    """Testing: like validation, with the ``*_test_*`` hooks; ``fp16`` autocasts."""

    mode = "test"
