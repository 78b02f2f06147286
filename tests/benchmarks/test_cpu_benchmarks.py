"""benchmarks/cpu_allocator.py and benchmarks/cpu_layout.py at tiny size: the tables are
printed (the ratios themselves are not asserted: no timed tests)."""

from __future__ import annotations

import pytest
from benchmark_support import BENCHMARKS, load_benchmark

QUICKSTART = str(BENCHMARKS.parent / "configs/quickstart/cls_shapes.py")


@pytest.mark.slow
def test_cpu_allocator_benchmark_runs_both_allocators(capsys):
    bench = load_benchmark("cpu_allocator")
    argv = ["--iters", "1", "--repeats", "1", "--batch-size", "2", "--img-size", "16"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "| default |" in out and "| tuned |" in out, out
    assert "train: default / tuned time = " in out and "infer: default / tuned time = " in out


def test_cpu_layout_benchmark_prints_both_layouts(capsys):
    bench = load_benchmark("cpu_layout")
    argv = [QUICKSTART, "--batch-size", "1", "--img-size", "32", "--repeats", "1"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| cls_shapes |"))
    assert row.split("|")[2].strip() == "ResNet" and row.rstrip().endswith("| channels_last |")


@pytest.mark.parametrize("script", ["cpu_allocator", "cpu_layout"])
def test_bad_sizes_are_refused_naming_the_flag(script, capsys):
    with pytest.raises(SystemExit):
        load_benchmark(script).main(["--repeats", "0"])
    assert "--repeats must be at least 1" in capsys.readouterr().err
