"""benchmarks/overhead.py and benchmarks/first_iteration.py at tiny size: both loops run
to the end, their losses agree, the table and the ``--profile`` listing are printed (the
ratios themselves are not asserted: no timed tests)."""

from __future__ import annotations

import pytest
from benchmark_support import load_benchmark


@pytest.mark.slow
def test_overhead_benchmark_runs_at_tiny_size_with_its_profile(capsys):
    bench = load_benchmark("overhead")
    argv = ["--images", "48", "--iters", "8", "--repeats", "2", "--batch-size", "8"]
    code = bench.main([*argv, "--workers", "1", "--profile"])
    out = capsys.readouterr().out
    assert code in (0, 1), out  # 1: over a target, which a tiny run may well be
    assert "first 20 losses equal to 5 decimals: yes" in out, out
    for row in ("steady s/iter", "total wall", "first iteration"):
        assert row in out, out
    assert "vistra's own functions, self time:" in out, out


@pytest.mark.slow
def test_first_iteration_benchmark_runs_both_commands(capsys):
    code = load_benchmark("first_iteration").main(["--repeats", "1"])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    assert "launch to end of first iteration, medians: bare" in out, out
    assert "CPU seconds, medians: bare" in out and "fastest launches: bare" in out, out
