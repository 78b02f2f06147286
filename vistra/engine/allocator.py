"""Keep freed CPU memory for reuse instead of handing it back to the OS every step.

A training or inference step allocates and frees the same activation buffers each
iteration. With glibc's default settings, a buffer over 128 KiB is ``mmap``ed and
``munmap``ed again (the threshold grows only after frees), and free memory at the top of
the heap is trimmed, so each step faults the same pages in afresh and the kernel zeroes
them again. Tuned, on the 2-core test machine, a training step of the quickstart model
faults 35 pages instead of 1,200 and one of ResNet-18 (CIFAR) 240 instead of 8,900, with
the same peak memory; the time saved there is within the machine's noise (0.97-1.10x;
``benchmarks/cpu_allocator.py`` measures it side by side). PyTorch's CPU performance guide
gets the same effect by preloading jemalloc or tcmalloc with decay disabled; this is the
same idea with the allocator already in the process: ``mallopt`` sets the mmap
threshold to glibc's maximum (32 MiB) and the trim threshold to 256 MiB. The environment
variables ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` are set to the same values,
so that processes started later (spawned data-loader workers) begin tuned; forked ones
inherit the settings anyway.

Nothing is changed when the user has chosen an allocator set-up already (any
``MALLOC_*_`` variable, ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``, or jemalloc /
tcmalloc in ``LD_PRELOAD``), when the C library is not glibc, or when
``VISTRA_CPU_ALLOCATOR=default``.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
CHOICES = ("tuned", "default")
ENV_VAR = "VISTRA_CPU_ALLOCATOR"
_USER_VARS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_ARENA_MAX",
)


@dataclass(frozen=True)
class AllocatorState:
    """What :func:`tune_cpu_allocator` found or did, for the environment report."""

    tuned: bool
    reason: str

    def __str__(self) -> str:
        return self.reason


_state: AllocatorState | None = None


def requested_mode(environ: dict[str, str] | None = None) -> str:
    """``'tuned'`` or ``'default'`` from ``VISTRA_CPU_ALLOCATOR`` (unset: tuned)."""
    env = os.environ if environ is None else environ
    mode = env.get(ENV_VAR, "tuned").strip().lower() or "tuned"
    if mode not in CHOICES:
        raise ValueError(f"{ENV_VAR}={env[ENV_VAR]!r}: give one of {', '.join(CHOICES)}")
    return mode


def _user_choice(environ: dict[str, str]) -> str | None:
    """The allocator set-up the user made themselves, if any."""
    for name in _USER_VARS:
        if name in environ:
            return f"{name} is set"
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc"
    preload = environ.get("LD_PRELOAD", "")
    for lib in ("jemalloc", "tcmalloc", "mimalloc"):
        if lib in preload:
            return f"{lib} is preloaded"
    return None


def _inherited(environ: dict[str, str]) -> bool:
    ours = {
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
        "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    }
    others = [n for n in _USER_VARS if n in environ and n not in ours]
    return not others and all(environ.get(k) == v for k, v in ours.items())


def tune_cpu_allocator() -> AllocatorState:
    """Tune glibc's allocator for this process once (see the module doc); idempotent."""
    global _state
    if _state is not None:
        return _state
    env = dict(os.environ)
    if requested_mode(env) == "default":
        _state = AllocatorState(False, f"default ({ENV_VAR}=default)")
        return _state
    if _inherited(env):  # a child of a tuned vistra process: glibc read the variables
        _state = AllocatorState(True, "glibc, freed memory kept (inherited from the parent)")
        return _state
    user = _user_choice(env)
    if user is not None:
        _state = AllocatorState(False, f"left as set by the user ({user})")
        return _state
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _state = AllocatorState(False, "default (not glibc)")
        return _state
    try:
        libc = ctypes.CDLL("libc.so.6")
        done = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(
            _M_TRIM_THRESHOLD, TRIM_THRESHOLD
        )
    except (OSError, AttributeError):
        done = 0
    if not done:
        _state = AllocatorState(False, "default (mallopt refused the settings)")
        return _state
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    os.environ["MALLOC_TRIM_THRESHOLD_"] = str(TRIM_THRESHOLD)
    _state = AllocatorState(
        True,
        f"glibc, freed memory kept (mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
        f"trim threshold {TRIM_THRESHOLD >> 20} MiB; {ENV_VAR}=default turns this off)",
    )
    return _state
