"""benchmarks/gpu_train.py on CPU: the one-line answer without CUDA, and ``--tiny``, which
runs every loop of the GPU measurement (2 iterations each, 32 px) and prints the table.
No figure is asserted (no timed tests); the runs' first losses must agree."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
import torch
from benchmark_support import BENCHMARKS, load_benchmark
from tiny_classifier import one_thread  # noqa: F401 - a fixture for this module

SCRIPT = BENCHMARKS / "gpu_train.py"


@pytest.fixture(scope="module")
def bench():
    module = load_benchmark("gpu_train")
    yield module
    sys.modules.pop(module.__name__, None)


@pytest.mark.slow
def test_without_cuda_it_says_so_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no CUDA device: nothing to measure (torch ")
    assert torch.__version__ in lines[0], lines


@pytest.mark.slow
def test_tiny_cpu_run_measures_every_loop(bench, capsys):
    code = bench.main(["--device", "cpu", "--tiny"])
    out = capsys.readouterr().out
    assert code in (0, 1), out  # 1: a ratio off target, which 2 CPU iterations may well be
    for row in ("ResNet-18, data on the device", "ResNet-18, decoded JPEGs", "PSPNet-R18-D8 32x64"):
        (line,) = [x for x in out.splitlines() if x.startswith(row)]
        assert line.endswith("n/a on CPU") and line.count("x") >= 1, line
    assert ": equal (rtol 0.001)" in out, out


def test_bare_step_with_amp_and_channels_last(bench):
    args = argparse.Namespace(
        iters=2, warmup=1, batch_size=2, size=32, workers=0, images=4,
        amp=True, channels_last=True, compile=False, tiny=True,
    )  # fmt: skip
    s = bench.settings(args, torch.device("cpu"))
    cfg = bench.cls_model_cfg(s)
    state = bench.MODELS.build(cfg).state_dict()
    step = bench.BareStep(s, cfg, state, bench.cls_loss)
    assert step.dtype == torch.bfloat16 and step.scaler is None  # CPU --amp: bf16, no scaler
    conv = step.model.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    images, labels = bench.device_batch("cpu", (32, 32), 2, 1000)
    before = conv.detach().clone()
    loss = step(images, labels, bgr=True)
    assert torch.isfinite(loss) and not torch.equal(before, conv.detach())


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_cuda_run_reports_peak_memory(bench, capsys):
    code = bench.main(["--device", "cuda", "--tiny", "--amp", "--channels-last"])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    assert "n/a on CPU" not in out and ": equal (rtol 0.02)" in out, out
