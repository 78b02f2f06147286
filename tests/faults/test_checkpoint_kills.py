"""kill -9 in the middle of checkpoint writes (issue #15).

A real training run writes a ~22 MB checkpoint after every iteration. A seeded random
schedule SIGKILLs it while one of those writes is in flight (the temporary file exists),
then resumes it with ``--resume``, over and over. After every kill the work dir must hold
a complete, ``weights_only``-loadable latest checkpoint and no truncated file; at the end
the weights and optimizer state must be bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from fault_support import (
    checkpoint_problems,
    load,
    pointer_target,
    report,
    same_training_state,
    start_train,
    temp_files,
    trials,
    write_config,
)

from vistra.checkpoint import find_latest_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

KILLS = trials(3, 20)
MAX_EPOCHS = 4  # 24 iterations: room for 20 kills that each advance 0-2 checkpoints
MAX_ITERS = MAX_EPOCHS * 6
SEED = 15
# a wide head makes the checkpoint (weights + SGD momentum) ~22 MB: a write takes tens of
# milliseconds, long enough to be hit in the middle
KILL_CFG = """
model['head']['num_classes'] = 40000
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=6),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1, max_keep_ckpts=1),
    visualization=dict(type='VisualizationHook', enable=False))
"""


def _writes(work_dir: Path) -> set[str]:
    """Temporary files of checkpoint writes in flight."""
    try:
        return {e.name for e in os.scandir(work_dir) if e.name.startswith(".iter_")}
    except FileNotFoundError:
        return set()


def _started(work_dir: Path, before: set[str]) -> set[int]:
    """Iterations whose checkpoint write has begun: a temporary file, or a checkpoint file
    that was not there before (how a non-atomic write would show)."""
    try:
        names = {e.name for e in os.scandir(work_dir)} - before
    except FileNotFoundError:
        return set()
    return {int(m.group(1)) for n in names if (m := re.match(r"\.?iter_(\d+)\.pth", n))}


def _watch(proc: subprocess.Popen, work_dir: Path, timeout: float) -> list[float]:
    """Wait for ``proc``; the lifetimes (s) of the checkpoint temp files seen meanwhile."""
    seen: dict[str, float] = {}
    lifetimes: list[float] = []
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the uninterrupted run did not finish"
        now, names = time.monotonic(), _writes(work_dir)
        for name in names:
            seen.setdefault(name, now)
        for name in [n for n in seen if n not in names]:
            lifetimes.append(now - seen.pop(name))
        time.sleep(0.001)
    return lifetimes


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run; also measures how long a checkpoint write takes."""
    root = tmp_path_factory.mktemp("kill_ref")
    cfg = write_config(root / "kill.py", max_epochs=MAX_EPOCHS, extra=KILL_CFG)
    work = root / "work"
    work.mkdir()
    proc = start_train(cfg, work, log=root / "log.txt")
    lifetimes = _watch(proc, work, timeout=300)
    assert proc.returncode == 0, (root / "log.txt").read_text()[-3000:]
    final = work / f"iter_{MAX_ITERS}.pth"
    assert len(lifetimes) >= MAX_ITERS // 2, f"saw only {len(lifetimes)} checkpoint writes"
    return root, cfg, final, statistics.median(lifetimes)


def _kill_during_write(
    proc: subprocess.Popen, work: Path, nth: int, delay: float, timeout: float = 300
) -> bool:
    """SIGKILL ``proc`` ``delay`` s after its ``nth`` checkpoint write (1-based) began;
    False when the run ended before that."""
    before = {p.name for p in work.glob("iter_*.pth")}
    started: set[int] = set()
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint write to kill"
        new = _started(work, before) - started
        if new:
            started |= new
            if len(started) >= nth:
                time.sleep(delay)
                proc.kill()
                proc.wait()
                return True
        time.sleep(0.0005)
    return False


def test_kill_9_during_checkpoint_writes_leaves_a_loadable_latest_and_exact_resume(
    tmp_path, reference
):
    _, cfg, final_ref, write_time = reference
    keys = set(load(final_ref)["state_dict"])
    work = tmp_path / "work"
    work.mkdir()
    rng = random.Random(SEED)
    loadable, mid_write, failures, done = 0, 0, [], 0  # done: iterations safely checkpointed
    for kill in range(1, KILLS + 1):
        # the first run must have written a checkpoint before its kill: a kill in the very
        # first write leaves nothing to resume from, by design
        nth = rng.randint(2 if kill == 1 else 1, min(3, MAX_ITERS - done))
        delay = rng.uniform(0.0, 1.0) * write_time
        args = ("--resume",) if kill > 1 else ()
        temps_before = set(temp_files(work))  # left by earlier kills, until rewritten
        proc = start_train(cfg, work, *args, log=tmp_path / f"kill_{kill}.txt")
        assert _kill_during_write(proc, work, nth, delay), (
            f"kill {kill}: the run ended before its checkpoint write {nth}"
        )
        if set(temp_files(work)) - temps_before:
            mid_write += 1  # the kill landed before os.replace (else: just after it)
        problems = checkpoint_problems(work, keys)
        latest = find_latest_checkpoint(work)
        if latest is None:
            problems.append("find_latest_checkpoint found nothing to resume from")
        if problems:
            failures.append(f"kill {kill} (write {nth}, +{delay * 1000:.0f} ms): {problems}")
        else:
            loadable += 1
            done = load(pointer_target(work))["meta"]["iter"]

    resumed = start_train(cfg, work, "--resume", log=tmp_path / "final.txt")
    assert resumed.wait(timeout=300) == 0, (tmp_path / "final.txt").read_text()[-3000:]
    assert "resumed from" in (tmp_path / "final.txt").read_text()
    diff = same_training_state(final_ref, work / f"iter_{MAX_ITERS}.pth")
    report(
        f"checkpoint kills: {loadable}/{KILLS} kill -9 during checkpoint writes left a "
        f"loadable latest checkpoint ({mid_write} inside the write, before os.replace, "
        f"{KILLS - mid_write} just after it; writes take ~{write_time * 1000:.0f} ms); "
        f"resumed run bit-identical to the uninterrupted one: {'1/1' if not diff else '0/1'}"
    )
    assert not failures, "\n".join(failures)
    assert mid_write >= 1, "no kill landed inside a write: the test proved nothing"
    assert not diff, f"resumed run differs from the uninterrupted one: {diff[:5]}"
    assert temp_files(work) == [], "temporary files of killed writes were not cleaned up"
