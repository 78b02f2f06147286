"""A dataloader worker killed mid-epoch (issue #15): training with ``num_workers=2``, one
worker SIGKILLs itself while it prepares a sample of the first epoch (``KillWorkerOnce``
in ``fault_hooks.py``). The run must end soon, with a non-zero exit code, no traceback,
and one ``error:`` line that says a dataloader worker was killed - not hang.
"""

from __future__ import annotations

import time

import pytest
from e2e_support import run_cli
from fault_support import TRACEBACK, child_env, report, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BOUND_S = 120
# worker 0 dies as it starts on batch 5 of 6 of the first epoch (its 9th sample)
WORKER_CFG = """
train_pipeline = [dict(type='KillWorkerOnce', at_sample=9, once_file='{root}/killed'),
                  dict(type='RandomFlip', prob=0.5), dict(type='PackInputs')]
train_dataloader['dataset']['pipeline'] = train_pipeline
"""


def test_killed_dataloader_worker_ends_the_run_with_one_line_not_a_hang(tmp_path):
    cfg = write_config(
        tmp_path / "worker.py", num_workers=2, extra=WORKER_CFG.format(root=tmp_path)
    )
    start = time.monotonic()
    result = run_cli(
        "train", cfg, "--work-dir", tmp_path / "work", cwd=tmp_path, env=child_env(),
        timeout=BOUND_S,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    output = result.output
    assert (tmp_path / "killed").exists(), output[-3000:]  # the worker was hit
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    report(
        f"killed dataloader worker: run ended after {elapsed:.0f} s (bound {BOUND_S} s), "
        f"exit code {result.returncode}; the user sees: {errors[-1] if errors else '(no error: line)'}"
    )
    assert result.returncode != 0, output[-3000:]
    assert TRACEBACK not in output, output[-3000:]
    assert len(errors) == 1 and "dataloader worker" in errors[0], output[-3000:]
    assert "killed by signal" in errors[0] and "SIGKILL" in errors[0], errors
