"""A real single-node Slurm cluster and OpenMPI, started by the repo's own scripts.

The scripts install the Debian packages when missing; where that is impossible they exit
with code 3 and the tests skip with the reason they printed.
"""

from __future__ import annotations

import subprocess

import pytest
from e2e_support import REPO

SKIP = 3


def _run_script(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "tools" / "cluster" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """Partition ``dev`` on this host, idle; stopped at the end if this fixture started it."""
    was_running = _run_script("local_slurm.sh", "status", timeout=60).returncode == 0
    started = _run_script("local_slurm.sh", "start")
    if started.returncode == SKIP:
        pytest.skip(f"no Slurm here: {started.stderr.strip().splitlines()[-1]}")
    assert started.returncode == 0, started.stdout + started.stderr
    yield "dev"
    if not was_running:
        _run_script("local_slurm.sh", "stop", timeout=120)


@pytest.fixture(scope="session")
def openmpi():
    installed = _run_script("install_openmpi.sh")
    if installed.returncode == SKIP:
        pytest.skip(f"no OpenMPI here: {installed.stderr.strip().splitlines()[-1]}")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return "mpirun"
