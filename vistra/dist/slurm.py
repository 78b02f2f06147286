"""What a run needs from the scheduler to survive preemption: requeue itself, and know
that it is a restart (so it resumes from the latest checkpoint without being told)."""

from __future__ import annotations

import logging
import os
import subprocess

logger = logging.getLogger("vistra")


def restart_count() -> int:
    """How many times the scheduler restarted this job: Slurm's requeue count, or
    torchrun's ``--max-restarts`` count; 0 for a first start."""
    for var in ("SLURM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


def requeue_this_job() -> bool:
    """``scontrol requeue $SLURM_JOB_ID``; False (with the reason logged) where that fails
    or this is not a Slurm job."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        proc = subprocess.run(
            ["scontrol", "requeue", job], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("could not requeue Slurm job %s: %s", job, exc)
        return False
    if proc.returncode != 0:
        logger.warning(
            "could not requeue Slurm job %s (scontrol exit %d): %s",
            job,
            proc.returncode,
            (proc.stderr or proc.stdout).strip(),
        )
        return False
    logger.warning("requeued Slurm job %s; it resumes from the checkpoint when it restarts", job)
    return True
