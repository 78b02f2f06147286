"""How a run stops early without losing work: preemption signals and failed ranks.

SIGTERM/SIGUSR1 only set a flag (``StopSignals``); at each step boundary every rank agrees
on it (``agreed_stop_signal``), so all ranks save after the same step
(``save_stop_checkpoint``), and a USR1 under Slurm requeues the job. In a multi-process
run the watchdog (``start_watchdog``) stops the others when one rank dies.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as torch_dist

from vistra.dist import DistInfo, slurm
from vistra.dist.watchdog import DEFAULT_TIMEOUT, NullWatchdog, Watchdog

if TYPE_CHECKING:
    from vistra.engine.runner import Runner

logger = logging.getLogger("vistra")

# What each rank contributes to the all-reduce; MAX makes USR1 (a preemption warning) win
# over TERM on the ranks that saw nothing, because it also requeues the job.
_CODES = {None: 0, signal.SIGTERM: 1, signal.SIGUSR1: 2}


class StopSignals:
    """While entered, SIGTERM/SIGUSR1 set ``runner._stop_signal`` instead of killing the
    process; the previous handlers come back on exit."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        self.previous = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self.previous[sig] = signal.signal(sig, self.handle)
            except ValueError:  # not the main thread
                pass

    def handle(self, signum: int, frame: Any) -> None:
        self.runner._stop_signal = signum
        logger.warning(
            "received %s: saving a checkpoint at the end of this step", signal.Signals(signum).name
        )

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def agreed_stop_signal(local: int | None, dist_info: DistInfo) -> int | None:
    """The signal this rank stops for, or None to go on. Every rank calls this at the same
    step boundary and adopts the strongest signal any rank got."""
    code = _CODES.get(local, 1)
    if torch_dist.is_available() and torch_dist.is_initialized():
        flag = torch.tensor(
            [code], device=dist_info.device if dist_info.backend == "nccl" else "cpu"
        )
        torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
        code = int(flag.item())
    if not code:
        return local
    # USR1 (a preemption warning) wins over TERM on every rank, since it also requeues
    return signal.SIGUSR1 if code == 2 else (local or signal.SIGTERM)


def save_stop_checkpoint(runner: Runner) -> None:
    """Every rank calls this; rank 0 writes ``iter_N.pth`` and, for USR1 under Slurm,
    requeues the job so it resumes from that checkpoint."""
    path = runner.save_checkpoint(
        runner.work_dir, f"iter_{runner.train_loop.loop_state()['iter']}.pth"
    )
    if path is None:
        return
    name = signal.Signals(runner._stop_signal or signal.SIGTERM).name
    logger.warning(
        "stopped by %s after iteration %d; checkpoint %s; resume with --resume",
        name,
        runner.iter,
        path,
    )
    if runner._stop_signal == signal.SIGUSR1 and os.environ.get("SLURM_JOB_ID"):
        slurm.requeue_this_job()


def start_watchdog(
    cfg: Any, dist_info: DistInfo, timestamp: str, kind: str
) -> Watchdog | NullWatchdog:
    """The rank-failure watchdog for a multi-process run; ``env_cfg.dist_cfg.
    watchdog_timeout`` sets its timeout, and 0 turns it off."""
    if dist_info.world_size < 2:
        return NullWatchdog()
    dist_cfg = dict((cfg.get("env_cfg") or {}).get("dist_cfg") or {})
    timeout = dist_cfg.get("watchdog_timeout", DEFAULT_TIMEOUT)
    if not timeout:
        return NullWatchdog()
    prefix = f"vistra/watchdog/{timestamp}/{kind}"
    return Watchdog(dist_info.rank, dist_info.world_size, float(timeout), prefix).start()
