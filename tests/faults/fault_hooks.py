"""Faults injected from inside real training processes, through ``custom_imports`` (the
fault tests put tests/faults on the children's PYTHONPATH). Each fires once per trial: it
creates ``once_file`` when it fires and stays quiet while that file exists, so that the
resumed processes of the same trial run on undisturbed."""

import os
import signal
import time
from pathlib import Path

from vistra.data.transforms.base import BaseTransform
from vistra.engine.hooks import Hook
from vistra.registry import HOOKS, TRANSFORMS


def _fire_once(once_file: str) -> bool:
    """True the first time for ``once_file`` (atomically: O_EXCL), False after."""
    try:
        os.close(os.open(once_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


@HOOKS.register_module()
class SignalOnceAtIterHook(Hook):
    """Sends ``sig`` to its own process after training iteration ``at_iter`` (1-based),
    on ``rank`` only; once per ``once_file``."""

    def __init__(self, at_iter: int, once_file: str, sig: str = "SIGTERM", rank: int = 0):
        self.at_iter, self.once_file, self.sig, self.rank = at_iter, once_file, sig, rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.rank != self.rank or runner.iter + 1 != self.at_iter:
            return
        if _fire_once(self.once_file):
            os.kill(os.getpid(), getattr(signal, self.sig))


@HOOKS.register_module()
class SignalOnceInValHook(Hook):
    """Sends ``sig`` to its own process in the validation that follows training epoch
    ``at_epoch`` (1-based), after validation batch ``at_batch`` (0-based), on ``rank``
    only; once per ``once_file``."""

    def __init__(
        self, at_epoch: int, at_batch: int, once_file: str, sig: str = "SIGTERM", rank: int = 0
    ):
        self.at_epoch, self.at_batch, self.once_file = at_epoch, at_batch, once_file
        self.sig, self.rank = sig, rank

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.rank != self.rank or runner.epoch != self.at_epoch or batch_idx != self.at_batch:
            return
        if _fire_once(self.once_file):
            Path(self.once_file).write_text(f"val epoch {runner.epoch} batch {batch_idx}\n")
            os.kill(os.getpid(), getattr(signal, self.sig))


@TRANSFORMS.register_module()
class KillWorkerOnce(BaseTransform):
    """SIGKILLs dataloader worker ``worker_id`` when it starts on its ``at_sample``-th
    sample (1-based; workers take whole batches in turn, so with 2 workers and batch 4,
    worker 0's 9th sample opens batch 5 of the epoch), once per ``once_file``. Every
    sample takes ``delay`` s in a worker, so that the main process waits for data and is
    a few iterations in when the worker dies. In the main process it does nothing."""

    def __init__(
        self, at_sample: int, once_file: str, worker_id: int = 0, delay: float = 0.05
    ) -> None:
        self.at_sample, self.once_file, self.worker_id = at_sample, once_file, worker_id
        self.delay, self._seen = delay, 0

    def transform(self, results: dict) -> dict:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        if info is None:
            return results
        time.sleep(self.delay)
        if info.id != self.worker_id:
            return results
        self._seen += 1
        if self._seen == self.at_sample and _fire_once(self.once_file):
            Path(self.once_file).write_text(f"worker {info.id} pid {os.getpid()}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return results


@HOOKS.register_module()
class FillDiskHook(Hook):
    """After training iteration ``at_iter`` (1-based), before that iteration's checkpoint
    is written, fills the work dir's file system up to ``leave`` times the size of the
    latest checkpoint, like another program filling the disk; once per ``once_file``. The
    filler goes to ``filler`` (on the same file system, outside the work dir)."""

    def __init__(self, at_iter: int, filler: str, once_file: str, leave: float = 0.5):
        self.at_iter, self.filler, self.once_file, self.leave = at_iter, filler, once_file, leave

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 != self.at_iter or not _fire_once(self.once_file):
            return
        work_dir = Path(runner.work_dir)
        latest = work_dir / (work_dir / "last_checkpoint").read_text().strip()
        st = os.statvfs(work_dir)
        fill = st.f_bavail * st.f_frsize - int(self.leave * latest.stat().st_size)
        with open(self.filler, "wb") as f:
            f.write(b"\0" * max(fill, 0))
