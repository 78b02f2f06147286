"""Rank-failure watchdog: when one rank dies or hangs, every rank stops within a bound.

Without it, the surviving ranks of a job wait inside a collective until the process-group
timeout (30 minutes by default) and then die with a message that names no rank. Schedulers
catch a rank that *exits* (torchrun, ``srun --kill-on-bad-exit``, mpirun), but not one that
is frozen (stopped, stuck in I/O, deadlocked in a data worker) nor a dead rank on another
node whose launcher lost contact.

Each rank runs a daemon thread that publishes a heartbeat to the job's rendezvous store
(the TCPStore that torchrun or rank 0 already runs, through a separate client connection):
a beat counter bumped by the thread, and the main thread's progress counter with a short
description of what it is doing ("train iter 37: loading data"). Rank 0 watches everyone;
the other ranks watch rank 0 and an ``abort`` key. Two rules, both timed with each
watcher's own monotonic clock (so clock skew between nodes does not matter):

* a rank whose beat counter has not moved for ``timeout`` seconds is dead or frozen;
* when no rank's progress counter has moved for ``timeout`` seconds, and no rank declared a
  long single-rank phase (``busy``: saving a checkpoint, computing metrics), the job is
  hung; the rank with the least progress is the one the others are waiting for.

The watcher that decides writes the reason under ``abort``, logs it and ends its process
with exit code 1; the others read it within one beat and do the same, so every rank's log
names the culprit.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch.distributed as torch_dist

logger = logging.getLogger("vistra")

DEFAULT_TIMEOUT = 60.0
EXIT_CODE = 1


@dataclass
class _Seen:
    """What a watcher last saw of one rank, and when (watcher's monotonic clock)."""

    beat: int = -1
    beat_changed: float = 0.0
    count: int = -1
    what: str = "starting"
    busy: bool = False
    done: bool = False


class Watchdog:
    """Heartbeat publisher and watcher for one rank; see the module docstring."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        timeout: float = DEFAULT_TIMEOUT,
        key_prefix: str = "vistra/watchdog",
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.rank, self.world_size, self.timeout = rank, world_size, float(timeout)
        self.interval = min(5.0, max(0.2, self.timeout / 10))
        self.prefix = key_prefix
        self._host = host or os.environ.get("MASTER_ADDR", "127.0.0.1")
        self._port = int(port or os.environ.get("MASTER_PORT", 29500))
        self._count = 0
        self._what = "starting"
        self._busy = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: torch_dist.Store | None = None

    # ------------------------------------------------------------------ main thread API
    def start(self) -> Watchdog:
        self._store = torch_dist.TCPStore(
            self._host,
            self._port,
            is_master=False,
            timeout=datetime.timedelta(seconds=max(10.0, self.timeout)),
            wait_for_workers=False,
        )
        self._publish(0)
        self._thread = threading.Thread(target=self._run, name="vistra-watchdog", daemon=True)
        self._thread.start()
        logger.info(
            "rank watchdog: a dead or hung rank stops the job after %.0f s "
            "(env_cfg.dist_cfg.watchdog_timeout; 0 turns it off)",
            self.timeout,
        )
        return self

    def mark(self, what: str) -> None:
        """The main thread made progress and is now doing ``what``."""
        self._count += 1
        self._what = what

    @contextlib.contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """A phase where other ranks may legitimately wait on this one for long."""
        self.mark(what)
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            self.mark(what + " (done)")

    def stop(self) -> None:
        """Say this rank finished and stop the thread; collective (ends with a barrier), so
        no rank's exit is mistaken for a failure by a watcher still running."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        with contextlib.suppress(Exception):
            self._publish(-1, done=True)
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.barrier()

    # ------------------------------------------------------------------ thread
    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def _publish(self, beat: int, done: bool = False) -> None:
        value = {
            "beat": beat,
            "count": self._count,
            "what": self._what,
            "busy": self._busy > 0,
            "done": done,
        }
        self._store.set(self._key(f"rank{self.rank}"), json.dumps(value))

    def _run(self) -> None:
        watched = range(self.world_size) if self.rank == 0 else [0]
        seen = {r: _Seen(beat_changed=time.monotonic()) for r in watched if r != self.rank}
        progress_changed, last_total = time.monotonic(), -1
        beat = 0
        while not self._stop.wait(self.interval):
            beat += 1
            try:
                self._publish(beat)
                aborted = self._read_abort()
                if aborted is not None:
                    self._die(aborted)
                now = time.monotonic()
                for r, s in seen.items():
                    self._update(r, s, now)
                reason = self._dead_rank(seen, now)
                if reason is None and self.rank == 0:
                    total = self._count + sum(s.count for s in seen.values())
                    if total != last_total or self._busy or any(s.busy for s in seen.values()):
                        progress_changed, last_total = now, total
                    elif now - progress_changed > self.timeout:
                        reason = self._hang_report(seen, now - progress_changed)
            except Exception as exc:  # the store is gone: its host (rank 0 or agent) exited
                if self._stop.is_set():
                    return
                reason = (
                    f"rank {self.rank} lost contact with the job's rendezvous store at "
                    f"{self._host}:{self._port} ({type(exc).__name__}: {exc}); rank 0 or its "
                    "launcher has probably exited"
                )
            if reason is not None:
                with contextlib.suppress(Exception):
                    self._store.set(self._key("abort"), reason)
                self._die(reason)

    def _read_abort(self) -> str | None:
        if self._store.check([self._key("abort")]):
            return self._store.get(self._key("abort")).decode()
        return None

    def _update(self, rank: int, seen: _Seen, now: float) -> None:
        key = self._key(f"rank{rank}")
        if not self._store.check([key]):
            return
        value = json.loads(self._store.get(key))
        if value["beat"] != seen.beat:
            seen.beat, seen.beat_changed = value["beat"], now
        seen.count, seen.what = value["count"], value["what"]
        seen.busy, seen.done = value["busy"], value["done"]

    def _dead_rank(self, seen: dict[int, _Seen], now: float) -> str | None:
        for rank, s in seen.items():
            silent = now - s.beat_changed
            if not s.done and silent > self.timeout:
                if s.beat < 0:
                    return f"rank {rank} never reported to the watchdog in {silent:.0f} s"
                return (
                    f"rank {rank} stopped responding {silent:.0f} s ago (dead or frozen); "
                    f"it was last at: {s.what}"
                )
        return None

    def _hang_report(self, seen: dict[int, _Seen], stalled: float) -> str:
        states = {r: (s.count, s.what) for r, s in seen.items()}
        states[self.rank] = (self._count, self._what)
        least = min(count for count, _ in states.values())
        stuck = sorted(r for r, (count, _) in states.items() if count == least)
        if len(stuck) == len(states):
            where = "; ".join(f"rank {r} at: {states[r][1]}" for r in stuck)
            return f"no rank has made progress for {stalled:.0f} s ({where})"
        waiting = "; ".join(
            f"rank {r} at: {what}" for r, (_, what) in sorted(states.items()) if r not in stuck
        )
        culprits = "; ".join(f"rank {r} is stuck at: {states[r][1]}" for r in stuck)
        return (
            f"no rank has made progress for {stalled:.0f} s; {culprits} "
            f"(the others wait for it: {waiting})"
        )

    def _die(self, reason: str) -> None:
        logger.error("watchdog: %s; stopping rank %d", reason, self.rank)
        for handler in logging.getLogger("vistra").handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(EXIT_CODE)  # the main thread is stuck in a collective: nothing else returns


class NullWatchdog:
    """What a single-process run (or ``watchdog_timeout=0``) uses: does nothing."""

    def start(self) -> NullWatchdog:
        return self

    def mark(self, what: str) -> None:
        pass

    @contextlib.contextmanager
    def busy(self, what: str) -> Iterator[None]:
        yield

    def stop(self) -> None:
        pass
