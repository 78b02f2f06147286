"""The CPU allocator tuning (vistra/engine/allocator.py), each case in a fresh interpreter:
mallopt settings are per process and cannot be undone inside one."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
_CLEAN = ("MALLOC_", "VISTRA_CPU_ALLOCATOR", "GLIBC_TUNABLES", "LD_PRELOAD")

# Touch 16 MiB, free it and report how much of it is still resident: glibc by default
# mmaps a block this large and unmaps it on free; tuned, it comes from the heap and stays.
PROBE = """
import json, os, sys
import numpy as np
from vistra.engine.allocator import tune_cpu_allocator
state = tune_cpu_allocator()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
a = np.ones(16 << 20, np.uint8)
before = rss()
del a
print(json.dumps({"tuned": state.tuned, "reason": state.reason, "kept": rss() - before + (16 << 20),
                  "env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}))
"""


def probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_CLEAN)}
    clean.update(env, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the tuning applies to glibc only")
def test_tuned_by_default_keeps_freed_memory_and_passes_it_to_children():
    tuned, default = probe(), probe(VISTRA_CPU_ALLOCATOR="default")
    assert tuned["tuned"] and "32 MiB" in tuned["reason"]
    assert tuned["env"] == {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                            "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}  # fmt: skip
    assert not default["tuned"] and default["env"] == {}
    assert tuned["kept"] >= 12 << 20  # the freed 16 MiB stay mapped for the next step
    assert default["kept"] <= 4 << 20  # glibc's default unmapped them
    child = probe(**tuned["env"])
    assert child["tuned"] and "inherited" in child["reason"] and child["kept"] >= 12 << 20


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MALLOC_ARENA_MAX": "2"}, "MALLOC_ARENA_MAX is set"),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, "GLIBC_TUNABLES"),
        ({"VISTRA_CPU_ALLOCATOR": "default"}, "VISTRA_CPU_ALLOCATOR=default"),
    ],
)
def test_left_alone_when_the_user_chose(env: dict, words: str):
    state = probe(**env)
    assert not state["tuned"] and words in state["reason"]
    assert set(state["env"]) <= set(env)


def test_bad_value_names_the_variable():
    from vistra.engine.allocator import requested_mode

    with pytest.raises(
        ValueError, match=r"VISTRA_CPU_ALLOCATOR='fast': give one of tuned, default"
    ):
        requested_mode({"VISTRA_CPU_ALLOCATOR": "fast"})
    assert requested_mode({}) == "tuned"
