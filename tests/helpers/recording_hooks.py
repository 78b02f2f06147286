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
        self.out_file = out_file

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        ids = [int(s.metainfo.get("sample_idx", -1)) for s in data_batch["data_samples"]]
        with open(self.out_file, "a") as f:
            f.write(json.dumps({"iter": runner.iter, "ids": ids, "loss": outputs["loss"]}) + "\n")


@HOOKS.register_module()
class SignalAtIterHook(Hook):
    """Sends SIGTERM to its own process after iteration ``at_iter`` (1-based), like a
    scheduler preempting the job."""

    def __init__(self, at_iter: int) -> None:
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter and not runner.resuming:
            os.kill(os.getpid(), signal.SIGTERM)
