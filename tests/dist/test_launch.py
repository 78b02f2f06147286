"""Launcher environment parsing, backend choice and port checks (in-process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from vistra.dist import launch, ports
from vistra.dist.launch import LaunchError


@pytest.fixture
def clean_env(monkeypatch):
    """``init_dist`` writes MASTER_ADDR/MASTER_PORT into os.environ itself: restore it all,
    or later tests would launch jobs at a made-up host."""
    saved = dict(os.environ)
    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


def test_slurm_env_port_order(clean_env):
    clean_env.setenv("SLURM_PROCID", "3")
    clean_env.setenv("SLURM_NTASKS", "4")
    clean_env.setenv("SLURM_LOCALID", "1")
    clean_env.setenv("SLURM_NODELIST", "gpu[01-02]")
    rank, world, local, set_by = launch._read_env("slurm", None)
    assert (rank, world, local) == (3, 4, 1)
    assert os.environ["MASTER_PORT"] == "29500" and "default" in set_by
    assert os.environ["MASTER_ADDR"] in ("gpu01", "gpu")  # scontrol, or the fallback parse
    clean_env.setenv("MASTER_PORT", "1234")
    assert launch._read_env("slurm", None)[3] == "MASTER_PORT"
    assert launch._read_env("slurm", 4321)[3] == "env_cfg.dist_cfg.port"
    assert os.environ["MASTER_PORT"] == "4321"  # the config wins over MASTER_PORT


def test_mpi_env_openmpi_then_pmi(clean_env):
    clean_env.setenv("PMI_RANK", "1")
    clean_env.setenv("PMI_SIZE", "2")
    assert launch._read_env("mpi", None)[:3] == (1, 2, 0)
    clean_env.setenv("OMPI_COMM_WORLD_RANK", "0")
    clean_env.setenv("OMPI_COMM_WORLD_SIZE", "2")
    clean_env.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0")
    assert launch._read_env("mpi", None)[:3] == (0, 2, 0)  # OpenMPI's variables first


@pytest.mark.parametrize(
    ("launcher", "needle"),
    [
        ("pytorch", "RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT unset"),
        ("slurm", "SLURM_PROCID"),
        ("mpi", "OMPI_COMM_WORLD_*"),
    ],
)
def test_missing_launcher_environment_names_the_variables(clean_env, launcher, needle):
    for var in ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        clean_env.delenv(var, raising=False)
    with pytest.raises(LaunchError, match=needle.replace("*", r"\*")):
        launch._read_env(launcher, None)


def test_unknown_launcher_lists_the_valid_ones():
    with pytest.raises(LaunchError, match="none, pytorch, slurm, mpi"):
        launch.init_dist("torchrun")


def test_nccl_on_cpu_falls_back_to_gloo_with_a_warning():
    with pytest.warns(UserWarning, match="'gloo' is used instead"):
        assert launch._choose_backend("nccl", use_cuda=False) == "gloo"
    assert launch._choose_backend(None, use_cuda=False) == "gloo"
    assert launch._choose_backend(None, use_cuda=True) == "nccl"


def test_busy_port_is_reported_with_its_setting():
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not ports.port_is_free(port)
        with pytest.raises(ports.PortInUseError, match=f"port {port} \\(MASTER_PORT\\) is already"):
            ports.ensure_port_free(port, "MASTER_PORT")
        cli = subprocess.run(
            [sys.executable, ports.__file__, str(port), "--set-by", "PORT"],
            capture_output=True,
            text=True,
        )
    assert cli.returncode == 1 and f"error: rendezvous port {port} (PORT)" in cli.stderr
    assert ports.port_is_free(port)  # closed again
    free = subprocess.run([sys.executable, ports.__file__], capture_output=True, text=True)
    assert free.returncode == 0 and ports.port_is_free(int(free.stdout))


def test_port_out_of_range():
    with pytest.raises(ports.PortInUseError, match="not in 1..65535"):
        ports.ensure_port_free(70000, "PORT")
