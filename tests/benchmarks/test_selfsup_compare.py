"""benchmarks/selfsup_compare.py at tiny size: every method pre-trains for its budget, is
probed from its extracted backbone, and the table, JSON and PNG are written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "selfsup_compare.py"


@pytest.mark.slow
def test_selfsup_compare_runs_at_tiny_size(tmp_path):
    methods = "mae,simclr"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--budget", "1", "--probe-epochs", "1", "--samples", "64",
         "--methods", methods, "--work-root", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "selfsup_compare.json").read_text())
    assert [r["method"] for r in rows] == methods.split(",")
    for row in rows:
        assert row["iters"] >= 1 and 0.0 <= row["top1"] <= 100.0
        assert (tmp_path / row["method"] / "backbone.pth").is_file()
    assert "| method | pre-train time (s) |" in proc.stdout
    assert (tmp_path / "selfsup_compare.png").stat().st_size > 1000


def test_unknown_method_is_refused_with_the_choices():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--methods", "mae,dino"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown ['dino']" in proc.stderr and "simmim" in proc.stderr
