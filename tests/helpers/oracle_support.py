"""Helpers for tests that compare vistra with the installed upstream packages.

The oracle (MMEngine, MMPretrain, MMSegmentation, MMSelfSup; tools/upstream/install.sh)
never shares a process with vistra: ``run_oracle('topic', ...)`` runs
``tools/upstream/oracle.py`` in a subprocess with the oracle's folder on PYTHONPATH.

``VISTRA_UPSTREAM_FULL=1`` (``scripts/test.sh --upstream``) makes the tests run over every
upstream config; otherwise ``sample()`` keeps a fixed, spread subset.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools" / "upstream"
FULL = os.environ.get("VISTRA_UPSTREAM_FULL", "") not in ("", "0")
# the wheels' shipped config trees, relative to the oracle folder
CONFIG_TREES = {
    "mmpretrain": "mmpretrain/.mim/configs",
    "mmseg": "mmseg/.mim/configs",
    "mmselfsup": "mmselfsup/.mim/configs",
}


@functools.cache
def oracle_dir() -> Path:
    """The oracle's install folder (installing it on first use); skips when it cannot be had."""
    proc = subprocess.run(
        ["bash", str(TOOLS / "install.sh")], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        message = f"upstream oracle could not be installed: {proc.stderr.strip()[-500:]}"
        if FULL:
            pytest.fail(message)
        pytest.skip(message)
    return Path(proc.stdout.strip().splitlines()[-1])


def config_tree(package: str) -> Path:
    """The folder of configs shipped in ``package``'s wheel ('mmpretrain', 'mmseg', 'mmselfsup')."""
    return oracle_dir() / CONFIG_TREES[package]


def oracle_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(oracle_dir())
    env.pop("VISTRA_DEBUG", None)
    return env


def run_oracle(topic: str, *args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``oracle.py topic args...``; fails the test with the oracle's stderr on error."""
    cmd = [sys.executable, str(TOOLS / "oracle.py"), topic, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=oracle_env())
    if proc.returncode != 0:
        pytest.fail(f"oracle {topic} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def run_oracle_json(topic: str, *args: str | Path, timeout: float = 600):
    """Run an oracle command whose stdout is one JSON document, and parse it."""
    return json.loads(run_oracle(topic, *args, timeout=timeout).stdout)


def sample(items: list, k: int) -> list:
    """All of ``items`` under VISTRA_UPSTREAM_FULL, else ``k`` of them spread evenly (fixed)."""
    items = sorted(items)
    if FULL or len(items) <= k:
        return items
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


SUMMARY: list[str] = []


def report(line: str) -> None:
    """Add a line to the "upstream oracle" section that pytest prints at the end of the run
    (e.g. ``configs identical 1203/1211``)."""
    SUMMARY.append(line)
