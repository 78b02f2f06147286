"""``vistra benchmark``: MMSegmentation's benchmark output and JSON, on trained quickstart
models, warm-up batches excluded, loaders re-read, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from e2e_support import REPO
from trained_tiny import trained_classifier

from vistra.analysis.building import build_model
from vistra.analysis.speed import SpeedRun, summary, time_inference
from vistra.cli.benchmark import main
from vistra.config import Config
from vistra.engine.build import build_dataloader

FPS = r"(\d+\.\d\d) img / s"
FEW = "test_dataloader.dataset.num_samples=3"  # fewer images than batches: the loader restarts


@pytest.mark.slow
def test_upstream_script_on_a_trained_classifier(tmp_path):
    trained = trained_classifier()
    cmd = [
        sys.executable, str(REPO / "tools/analysis_tools/benchmark.py"), trained.config,
        trained.checkpoint, "--num-iters", "8", "--num-warmup", "2", "--log-interval", "4",
        "--work-dir", tmp_path, "--cfg-options", FEW,
    ]  # fmt: skip
    # one thread: OpenMP threads on a CPU shared with other tests wait on each other
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="-1")
    done = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "random weights" not in done.stderr
    # MMSeg's lines: batches 4 and 8 are past the 2 warm-up ones
    assert re.search(r"^Done image \[4  / 8\], fps: " + FPS, out, re.M)
    assert re.search(r"^Done image \[8  / 8\], fps: " + FPS, out, re.M)
    overall = float(re.search(r"^Overall fps: " + FPS, out, re.M).group(1))
    assert re.search(rf"^Average fps of 1 evaluations: {overall}$", out, re.M)
    (record_file,) = tmp_path.glob("fps_*.json")
    record = json.loads(record_file.read_text())
    assert record["unit"] == "img / s" and record["overall_fps_1"] == overall > 0
    assert record["average_fps"] == overall and record["fps_variance"] == 0.0


def test_random_weights_on_a_segmenter_with_repeats(tmp_path, capsys):
    config = str(REPO / "configs/quickstart/seg_shapes.py")
    argv = [config, "--num-iters", "3", "--num-warmup", "1", "--log-interval", "0",
            "--batch-size", "2", "--repeat-times", "2", "--work-dir", str(tmp_path),
            "--cfg-options", FEW]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "random weights" in captured.err
    assert "batch size 2, 3 batches, the first 1 not timed" in captured.out
    assert captured.out.count("Overall fps:") == 2 and "Run 2:" in captured.out
    record = json.loads(next(tmp_path.glob("fps_*.json")).read_text())
    fps = [record["overall_fps_1"], record["overall_fps_2"]]
    assert record["average_fps"] == pytest.approx(sum(fps) / 2, abs=0.01)
    assert record["batch_size"] == 2 and record["checkpoint"] is None


def test_warm_up_is_excluded_and_short_loaders_start_over():
    cfg = Config.fromfile(REPO / "configs/quickstart/cls_shapes.py")
    loader_cfg = {**cfg.test_dataloader, "batch_size": 2}
    loader_cfg["dataset"] = {**loader_cfg["dataset"], "num_samples": 3}  # batches of 2, 1
    loader = build_dataloader(loader_cfg, "test_dataloader", seed=0, rank=0)
    lines = []
    run = time_inference(build_model(cfg), loader, 5, 1, 2, torch.device("cpu"), lines.append)
    assert run.images == 1 + 2 + 1 + 2  # batches 2..5: sizes 1, 2, 1, 2
    assert run.seconds > 0
    assert [line.split(",")[0] for line in lines[:2]] == [
        "Done image [2  / 5]",
        "Done image [4  / 5]",
    ]
    assert lines[-1].startswith("Overall fps: ")
    assert summary([SpeedRun(10, 1.0), SpeedRun(30, 1.0)]) == {
        "overall_fps_1": 10.0, "overall_fps_2": 30.0, "average_fps": 20.0, "fps_variance": 100.0,
    }  # fmt: skip


def test_errors_are_one_line(tmp_path, capsys):
    seg = str(REPO / "configs/quickstart/seg_shapes.py")
    assert main([seg, "--num-iters", "5", "--num-warmup", "5"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: --num-iters 5 must be larger than --num-warmup 5"
    )
    if not torch.cuda.is_available():
        assert main([seg, "--device", "cuda", "--work-dir", str(tmp_path)]) == 2
        assert "no CUDA device is available here; use --device cpu" in capsys.readouterr().err
    # a checkpoint of another model (the segmenter's) leaves this one's weights unset
    wrong = tmp_path / "seg.pth"
    torch.save({"state_dict": build_model(Config.fromfile(seg)).state_dict()}, wrong)
    cls = str(REPO / "configs/quickstart/cls_shapes.py")
    assert main([cls, str(wrong), "--work-dir", str(tmp_path), "--cfg-options", FEW]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model weights unset" in err
    assert not list(tmp_path.glob("fps_*.json"))
