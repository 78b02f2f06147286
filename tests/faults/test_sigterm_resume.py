"""SIGTERM (preemption) at a random training iteration and in the middle of a validation,
then ``--resume``: the final weights must equal an uninterrupted run's, bit for bit
(issue #15). One process, and two through real torchrun (``tools/dist_train.sh``, gloo
on CPU), where the signal reaches one rank only.

Each trial draws (seeded) one iteration and one validation batch; the hooks of
``fault_hooks.py`` send SIGTERM there, once each. The run stops cleanly at the first,
is resumed, stops at the second, is resumed again and finishes.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest
from e2e_support import Result, run_cli, run_tool
from fault_support import (
    TRACEBACK,
    child_env,
    pointer_target,
    report,
    same_training_state,
    trials,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

MAX_EPOCHS = 3
SAMPLES, VAL_SAMPLES, BATCH = 24, 10, 4  # TINY_CLS
MODES = {  # world size -> trials (default sample, full)
    1: trials(1, 10),
    2: trials(1, 10),
}
STOPPED = re.compile(r"stopped by SIGTERM after iteration (\d+)")


def _train(cfg: Path, work: Path, world_size: int, *args: str) -> Result:
    if world_size == 1:
        return run_cli("train", cfg, "--work-dir", work, *args, cwd=work.parent, env=child_env())
    return run_tool(
        "dist_train.sh", cfg, 2, "--work-dir", work, *args, cwd=work.parent, env=child_env()
    )


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """One uninterrupted run per world size, made on first use."""
    done: dict[int, Path] = {}

    def get(world_size: int) -> Path:
        if world_size not in done:
            root = tmp_path_factory.mktemp(f"sigterm_ref_{world_size}")
            cfg = write_config(root / "sigterm.py", max_epochs=MAX_EPOCHS)
            result = _train(cfg, root / "work", world_size)
            assert result.returncode == 0, result.output[-3000:]
            done[world_size] = root / "work" / f"epoch_{MAX_EPOCHS}.pth"
        return done[world_size]

    return get


def _draw(rng: random.Random, world_size: int) -> tuple[int, int, int, int, int]:
    """(iteration, its rank, validation epoch, validation batch, its rank) of one trial."""
    per_epoch = SAMPLES // (BATCH * world_size)
    val_batches = math.ceil(math.ceil(VAL_SAMPLES / world_size) / BATCH)
    epoch = rng.randint(1, MAX_EPOCHS - 1)  # a validation that training goes on after
    batch = rng.randrange(val_batches)
    # a stop in that validation saves after the next iteration: a signal at that very
    # iteration would be the same stop, not a second one
    choices = [i for i in range(1, MAX_EPOCHS * per_epoch + 1) if i != epoch * per_epoch + 1]
    return rng.choice(choices), rng.randrange(world_size), epoch, batch, rng.randrange(world_size)


def _trial(root: Path, world_size: int, draw: tuple, reference: Path) -> list[str]:
    """Run one trial; what went wrong (empty: resumed bit-identically)."""
    at_iter, iter_rank, val_epoch, val_batch, val_rank = draw
    per_epoch = SAMPLES // (BATCH * world_size)
    expected_stops = sorted([at_iter, val_epoch * per_epoch + 1])
    hooks = (
        f"dict(type='SignalOnceAtIterHook', at_iter={at_iter}, rank={iter_rank}, "
        f"once_file='{root}/iter.fired'), "
        f"dict(type='SignalOnceInValHook', at_epoch={val_epoch}, at_batch={val_batch}, "
        f"rank={val_rank}, once_file='{root}/val.fired')"
    )
    cfg = write_config(
        root / "sigterm.py", max_epochs=MAX_EPOCHS, extra=f"custom_hooks = [{hooks}]\n"
    )
    work, stops = root / "work", []
    for run in range(4):
        result = _train(cfg, work, world_size, *(("--resume",) if run else ()))
        if result.returncode != 0 or TRACEBACK in result.output:
            return [f"run {run + 1} exited with {result.returncode}: {result.output[-1500:]}"]
        stopped = STOPPED.search(result.output)
        if stopped is None:
            break
        stops.append(int(stopped.group(1)))
        if pointer_target(work).name != f"iter_{stops[-1]}.pth":
            return [
                f"stopped after iteration {stops[-1]}, but last_checkpoint names {pointer_target(work).name}"
            ]
    if stops != expected_stops:
        return [f"stops after iterations {stops}, expected {expected_stops}"]
    diff = same_training_state(reference, work / f"epoch_{MAX_EPOCHS}.pth")
    return [f"differs from the uninterrupted run: {diff[:5]}"] if diff else []


@pytest.mark.parametrize("world_size", sorted(MODES), ids=lambda n: f"{n}proc")
def test_sigterm_at_an_iteration_and_in_validation_then_resume_is_bit_identical(
    tmp_path, references, world_size
):
    reference = references(world_size)
    rng = random.Random(1500 + world_size)
    n, identical, failures = MODES[world_size], 0, []
    for t in range(1, n + 1):
        draw = _draw(rng, world_size)
        root = tmp_path / f"trial_{t}"
        root.mkdir()
        problems = _trial(root, world_size, draw, reference)
        if problems:
            at_iter, iter_rank, epoch, batch, val_rank = draw
            failures.append(
                f"trial {t} (SIGTERM after iter {at_iter} on rank {iter_rank}, in val epoch "
                f"{epoch} batch {batch} on rank {val_rank}): {problems}"
            )
        else:
            identical += 1
    where = "1 process" if world_size == 1 else f"{world_size} processes (torchrun, gloo)"
    report(
        f"SIGTERM resumes, {where}: {identical}/{n} bit-identical to the uninterrupted run "
        f"(each trial: SIGTERM at a random iteration and in a validation, 2 resumes)"
    )
    assert not failures, "\n".join(failures)
