"""benchmarks/inference.py at tiny size: both paths timed, the ratio and the start-up of
`vistra infer` (a real subprocess) printed and written."""

from __future__ import annotations

import json

import pytest
from benchmark_support import load_benchmark

TINY = ["--batch-size", "4", "--batches", "1", "--img-size", "32", "--repeats", "1"]


@pytest.mark.slow
def test_inference_benchmark_runs_at_tiny_size(tmp_path, capsys):
    bench = load_benchmark("inference")
    out = tmp_path / "figures.json"
    assert bench.main([*TINY, "--startup-repeats", "1", "--target", "0", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["api_images_per_s"] > 0 and figures["bare_images_per_s"] > 0
    assert figures["ratio"] == pytest.approx(
        figures["api_images_per_s"] / figures["bare_images_per_s"]
    )
    assert figures["startup_s"] > 0 and figures["batch_size"] == 4
    printed = capsys.readouterr().out
    assert "| inference_model(numpy images) |" in printed
    assert "vistra infer start-up to the first prediction" in printed
    # a ratio below the target is exit code 1
    assert bench.main([*TINY, "--startup-repeats", "0", "--target", "1e9"]) == 1
