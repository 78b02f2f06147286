"""``mpirun -np 2 tools/train.py --launcher mpi`` with real OpenMPI, on CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
from e2e_support import REPO, assert_same_weights, load_weights, run_tool, tool_env, write_cfg

from vistra.dist import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_mpirun_two_ranks_trains_like_torchrun(openmpi, tmp_path):
    cfg = write_cfg(tmp_path, max_epochs=2)
    env = tool_env(
        {
            "MASTER_PORT": str(free_port()),
            # the tests run as root in CI containers; OpenMPI refuses that unless told
            "OMPI_ALLOW_RUN_AS_ROOT": "1",
            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        }
    )
    forwarded = [
        arg
        for var in ("PYTHONPATH", "MASTER_PORT", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
        for arg in ("-x", var)
    ]
    proc = subprocess.run(
        [
            openmpi,
            "-np",
            "2",
            "--oversubscribe",
            *forwarded,
            sys.executable,
            str(REPO / "tools" / "train.py"),
            str(cfg),
            "--work-dir",
            str(tmp_path / "mpi"),
            "--launcher",
            "mpi",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Distributed launcher: mpi" in proc.stdout and "world size: 2" in proc.stdout
    torchrun = run_tool("dist_train.sh", cfg, 2, "--work-dir", tmp_path / "torchrun", cwd=tmp_path)
    assert torchrun.returncode == 0, torchrun.output
    assert_same_weights(
        load_weights(tmp_path / "mpi" / "epoch_2.pth"),
        load_weights(tmp_path / "torchrun" / "epoch_2.pth"),
    )
