"""tools/slurm_train.sh and slurm_test.sh on a real single-node Slurm cluster (CPU tasks),
and preemption: USR1 mid-run, the job requeues itself and resumes to the same weights."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time

import pytest
from e2e_support import (
    REPO,
    assert_same_weights,
    load_weights,
    read_jsonl,
    run_cli,
    run_dirs,
    run_tool,
    tool_env,
    write_cfg,
)

from vistra.dist import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CPU_TASKS = {"GPUS": "2", "GPUS_PER_NODE": "0", "CPUS_PER_TASK": "1"}
# slowed down so that the preemption test can signal it mid-run; the same config everywhere
HOOKS = [
    "dict(type='RecordBatchesHook', out_file='{work_dir}/batches_{rank}.jsonl')",
    "dict(type='SleepEveryIterHook', seconds=0.4)",
]


def slurm_env(**extra: str) -> dict:
    return tool_env({**CPU_TASKS, "MASTER_PORT": str(free_port()), **extra})


@pytest.fixture(scope="module")
def reference(slurm_cluster, tmp_path_factory):
    """One uninterrupted 2-task Slurm run, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("slurm")
    cfg = write_cfg(root, "preempt.py", max_epochs=4, hooks=HOOKS)
    result = run_tool(
        "slurm_train.sh", slurm_cluster, "ref", cfg, root / "ref", cwd=root, env=slurm_env()
    )
    assert result.returncode == 0, result.output
    return root, cfg, result


def test_slurm_train_runs_two_tasks_with_work_dir_as_fourth_argument(reference):
    root, _, result = reference
    assert "Distributed launcher: slurm" in result.output
    assert "world size: 2" in result.output
    assert (root / "ref" / "epoch_4.pth").is_file()
    assert len(read_jsonl(root / "ref" / "batches_1.jsonl")) == 12  # rank 1 trained too


def test_slurm_test_matches_one_process(reference, slurm_cluster, tmp_path):
    root, cfg, _ = reference
    ckpt = root / "ref" / "epoch_4.pth"
    one = run_cli("test", cfg, ckpt, "--work-dir", tmp_path / "one", cwd=tmp_path)
    assert one.returncode == 0, one.output
    two = run_tool(
        "slurm_test.sh",
        slurm_cluster,
        "test",
        cfg,
        ckpt,
        "--work-dir",
        tmp_path / "two",
        cwd=tmp_path,
        env=slurm_env(),
    )
    assert two.returncode == 0, two.output
    metrics = [
        json.loads(next(run_dirs(tmp_path / d)[0].glob("*.json")).read_text())
        for d in ("one", "two")
    ]
    assert metrics[0] == metrics[1]


def test_busy_master_port_fails_fast_naming_it(slurm_cluster, tmp_path):
    cfg = write_cfg(tmp_path, max_epochs=1)
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        start = time.monotonic()
        result = run_tool(
            "slurm_train.sh",
            slurm_cluster,
            "busy",
            cfg,
            tmp_path / "w",
            cwd=tmp_path,
            env=slurm_env(MASTER_PORT=str(port)),
            timeout=120,
        )
        elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert f"error: rendezvous port {port} (MASTER_PORT) is already in use" in result.output
    assert "env_cfg.dist_cfg.port" in result.output
    assert elapsed < 30, elapsed


def _job_state(job: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out))


def test_usr1_requeues_the_job_and_it_resumes_to_the_same_weights(reference, slurm_cluster):
    root, cfg, _ = reference
    work = root / "preempted"
    script = root / "preempt.sbatch"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH -p {slurm_cluster}\n#SBATCH -J preempt\n#SBATCH --ntasks=2\n"
        "#SBATCH --cpus-per-task=1\n#SBATCH --requeue\n#SBATCH --open-mode=append\n"
        f"#SBATCH -o {root}/preempt.out\n"
        f"bash {REPO}/tools/slurm_train.sh {slurm_cluster} preempt {cfg} {work}\n"
    )
    env = slurm_env()
    submitted = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, env=env, check=True
    )
    job = submitted.stdout.strip().split(";")[0]
    try:
        # wait until it has trained 3 of its 12 steps, then warn it of preemption
        deadline = time.monotonic() + 180
        batches = work / "batches_0.jsonl"
        while not (batches.is_file() and len(read_jsonl(batches)) >= 3):
            assert time.monotonic() < deadline, (root / "preempt.out").read_text()
            time.sleep(0.2)
        subprocess.run(["scancel", "--signal=USR1", job], check=True)
        deadline = time.monotonic() + 240
        while (state := _job_state(job))["JobState"] not in ("COMPLETED", "FAILED", "CANCELLED"):
            assert time.monotonic() < deadline, (root / "preempt.out").read_text()
            time.sleep(1)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    out = (root / "preempt.out").read_text()
    assert state["JobState"] == "COMPLETED", out
    assert int(state["Restarts"]) == 1, state
    assert "stopped by SIGUSR1 after iteration" in out
    assert "requeued Slurm job" in out
    assert "restart 1 of this job" in out and "resumed from" in out
    assert_same_weights(
        load_weights(root / "ref" / "epoch_4.pth"), load_weights(work / "epoch_4.pth")
    )
    for rank in (0, 1):  # every batch once, in the same order: no replay, none lost
        ref = [b["ids"] for b in read_jsonl(root / "ref" / f"batches_{rank}.jsonl")]
        assert [b["ids"] for b in read_jsonl(work / f"batches_{rank}.jsonl")] == ref
