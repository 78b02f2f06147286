"""Process-group set-up from ``--launcher`` and the environment.

``init_dist`` returns a :class:`DistInfo` record; nothing else in vistra reads launcher
environment variables. The engine is torch.distributed: torchrun, Slurm's srun or mpirun
start the processes, this module only reads what they set.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from vistra.dist.ports import PortInUseError, ensure_port_free

logger = logging.getLogger("vistra")

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    launcher: str = "none"
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.launcher != "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class LaunchError(RuntimeError):
    """A launcher, port or environment problem, with the variable to fix."""


def cuda_usable() -> bool:
    """CUDA present and not hidden with ``CUDA_VISIBLE_DEVICES=-1`` (or empty)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("-1", ""):
        return False
    return torch.cuda.is_available()


def init_dist(
    launcher: str = "none",
    backend: str | None = None,
    port: int | None = None,
    timeout: int | float | datetime.timedelta | None = None,
    gpu_id: int | None = None,
) -> DistInfo:
    """Read rank/world size for ``launcher``, pick the device, join the process group.

    ``gpu_id`` picks ``cuda:N`` for a single-process run (the 0.x ``--gpu-id``; the CLI
    checks it); a launched process always uses the GPU of its local rank.
    """
    if launcher not in LAUNCHERS:
        raise LaunchError(f"--launcher {launcher!r} is not one of {', '.join(LAUNCHERS)}")
    use_cuda = cuda_usable()
    if gpu_id is not None and (launcher != "none" or not use_cuda):
        raise LaunchError(f"gpu_id={gpu_id} needs --launcher none and a visible CUDA device")
    if launcher == "none":
        if gpu_id is not None:
            torch.cuda.set_device(gpu_id)  # stray .cuda() calls land there too, not on GPU 0
        device = torch.device("cuda", gpu_id or 0) if use_cuda else torch.device("cpu")
        return DistInfo(device=device)

    rank, world_size, local_rank, port_set_by = _read_env(launcher, port)
    if rank == 0 and port_set_by is not None:  # rank 0 hosts the store: fail now, not in a hang
        try:
            ensure_port_free(
                int(os.environ["MASTER_PORT"]),
                port_set_by,
                "set MASTER_PORT=<port> or --cfg-options env_cfg.dist_cfg.port=<port>",
            )
        except PortInUseError as exc:
            raise LaunchError(str(exc)) from None
    backend = _choose_backend(backend, use_cuda)
    device = (
        torch.device("cuda", local_rank % torch.cuda.device_count())
        if use_cuda
        else torch.device("cpu")
    )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        kwargs = {}
        if timeout is not None:
            kwargs["timeout"] = (
                timeout
                if isinstance(timeout, datetime.timedelta)
                else datetime.timedelta(seconds=timeout)
            )
        torch_dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank, world_size, local_rank, device, launcher, backend)


def _choose_backend(backend: str | None, use_cuda: bool) -> str:
    if backend is None:
        return "nccl" if use_cuda else "gloo"
    if backend == "nccl" and not use_cuda:
        warnings.warn(
            "dist backend 'nccl' needs CUDA; this run is on CPU, so 'gloo' is used instead",
            stacklevel=2,
        )
        return "gloo"
    return backend


def _read_env(launcher: str, port: int | None) -> tuple[int, int, int, str | None]:
    """(rank, world size, local rank, what set the port when this process's rank 0 must
    host the store itself: Slurm and MPI; torchrun's agent hosts it otherwise)."""
    env = os.environ
    if launcher == "pytorch":
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in env]
        if missing:
            raise LaunchError(
                f"--launcher pytorch expects torchrun's environment; {', '.join(missing)} unset. "
                "Start with tools/dist_train.sh or torchrun --nproc-per-node N"
            )
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), None
    if launcher == "slurm":
        try:
            rank, world_size = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
            local_rank, nodelist = int(env["SLURM_LOCALID"]), env["SLURM_NODELIST"]
        except KeyError as exc:
            raise LaunchError(
                f"--launcher slurm expects srun's environment; {exc.args[0]} unset"
            ) from None
        os.environ.setdefault("MASTER_ADDR", _first_slurm_host(nodelist))
        return rank, world_size, local_rank, _set_master_port(port)
    # mpi: OpenMPI's variables, else MPICH/Intel's PMI_*
    if "OMPI_COMM_WORLD_RANK" in env:
        rank, world_size = int(env["OMPI_COMM_WORLD_RANK"]), int(env["OMPI_COMM_WORLD_SIZE"])
        local_rank = int(env.get("OMPI_COMM_WORLD_LOCAL_RANK", 0))
    elif "PMI_RANK" in env:
        rank, world_size = int(env["PMI_RANK"]), int(env["PMI_SIZE"])
        local_rank = int(env.get("MPI_LOCALRANKID", env.get("PMI_LOCAL_RANK", 0)))
    else:
        raise LaunchError(
            "--launcher mpi expects mpirun's environment (OMPI_COMM_WORLD_* or PMI_*)"
        )
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    return rank, world_size, local_rank, _set_master_port(port)


def _set_master_port(port: int | None) -> str:
    """MMEngine's order: ``env_cfg.dist_cfg.port``, else ``MASTER_PORT``, else 29500.
    Returns the setting a user changes to move it, for the busy-port message."""
    if port is not None:
        os.environ["MASTER_PORT"] = str(port)
        return "env_cfg.dist_cfg.port"
    if "MASTER_PORT" in os.environ:
        return "MASTER_PORT"
    os.environ["MASTER_PORT"] = "29500"
    return "the default, as MASTER_PORT is unset"


def _first_slurm_host(nodelist: str) -> str:
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return nodelist.split(",")[0].split("[")[0]


def destroy_dist() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
