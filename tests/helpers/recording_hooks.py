"""Hooks used by end-to-end tests through ``custom_imports`` (real runs, real signals)."""

import json
import os
import signal

from vistra.engine.hooks import Hook
from vistra.registry import HOOKS


@HOOKS.register_module()
class RecordBatchesHook(Hook):
    """Appends the sample indices of every training batch to a JSON-lines file."""

    def __init__(self, out_file: str) -> None:
        self.out_file = out_file  # may contain {rank} and {work_dir}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        ids = [int(s.metainfo.get("sample_idx", -1)) for s in data_batch["data_samples"]]
        with open(self.out_file.format(rank=runner.rank, work_dir=runner.work_dir), "a") as f:
            f.write(json.dumps({"iter": runner.iter, "ids": ids, "loss": outputs["loss"]}) + "\n")


@HOOKS.register_module()
class SignalAtIterHook(Hook):
    """Sends ``sig`` (SIGTERM by default) to its own process after iteration ``at_iter``
    (1-based), like a scheduler preempting the job; only on ``rank`` when given. SIGSTOP
    freezes the process (a hung rank), SIGKILL kills it (a dead one)."""

    def __init__(self, at_iter: int, sig: str = "SIGTERM", rank: int | None = None) -> None:
        self.at_iter, self.sig, self.rank = at_iter, getattr(signal, sig), rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.rank is not None and runner.rank != self.rank:
            return
        if runner.iter + 1 == self.at_iter and not runner.resuming:
            os.kill(os.getpid(), self.sig)


@HOOKS.register_module()
class SleepAtIterHook(Hook):
    """Blocks the main thread of ``rank`` for ``seconds`` after iteration ``at_iter``: a
    rank that hangs while its process stays alive (like a stuck data worker)."""

    def __init__(self, at_iter: int, rank: int, seconds: float = 3600) -> None:
        self.at_iter, self.rank, self.seconds = at_iter, rank, seconds

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.rank == self.rank and runner.iter + 1 == self.at_iter:
            import time

            time.sleep(self.seconds)


@HOOKS.register_module()
class SleepEveryIterHook(Hook):
    """Slows training down so that a test can signal it mid-run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        import time

        time.sleep(self.seconds)


@HOOKS.register_module()
class NonFiniteWeightsHook(Hook):
    """Fills the first parameter with ``value`` (nan or inf) after iteration ``at_iter``:
    the next forward pass gives a non-finite loss, as a diverging run does."""

    def __init__(self, at_iter: int, value: str = "nan") -> None:
        self.at_iter, self.value = at_iter, float(value)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            import torch

            with torch.no_grad():
                next(runner.model.parameters()).fill_(self.value)
