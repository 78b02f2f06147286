"""``tools/benchmarks/knn.py`` end to end: a tiny ViT trained two iterations, then kNN on
its class-token features, in one process and in two (torchrun, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import REPO, run_cli, run_dirs, tool_env

from vistra.dist import free_port

pytestmark = pytest.mark.slow

TINY_VIT = """
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=32, patch_size=8, out_type='cls_token'),
    neck=dict(type='ClsBatchNormNeck', input_features=32),
    head=dict(type='VisionTransformerClsHead', num_classes=3, in_channels=32),
)
data_preprocessor = dict(num_classes=3, mean=[127.5] * 3, std=[64.0] * 3, to_rgb=True)
shapes = dict(type='ShapesDataset', num_classes=3, img_size=32)
train_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(shapes, num_samples=30, split='train',
                 pipeline=[dict(type='RandomFlip', prob=0.5), dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(shapes, num_samples=11, split='val', pipeline=[dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
val_cfg = dict()
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False))
randomness = dict(seed=0)
"""
KNN = REPO / "tools" / "benchmarks" / "knn.py"


def run_knn(*args: str, cwd: Path, nproc: int = 1) -> subprocess.CompletedProcess:
    launch = [sys.executable, str(KNN)]
    if nproc > 1:
        launch = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            f"--master_port={free_port()}", str(KNN), "--launcher", "pytorch",
        ]  # fmt: skip
    return subprocess.run(
        [*launch, *map(str, args)],
        cwd=cwd,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def knn_record(work_dir: Path) -> tuple[dict, str]:
    (run,) = run_dirs(work_dir / "knn")
    return json.loads((run / f"{run.name}.json").read_text()), (run / f"{run.name}.log").read_text()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("knn")
    cfg = root / "tiny_vit.py"
    cfg.write_text(TINY_VIT)
    result = run_cli("train", cfg, "--work-dir", root / "work", cwd=root)
    assert result.returncode == 0, result.output
    return cfg, root / "work" / "iter_2.pth"


def test_knn_tool_writes_accuracies(tmp_path, trained):
    cfg, ckpt = trained
    result = run_knn(cfg, ckpt, "--num-knn", 1, 5, 50, "--work-dir", tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    record, log = knn_record(tmp_path / "w")
    assert (record["num_train"], record["num_val"], record["feature_dim"]) == (30, 11, 32)
    assert record["temperature"] == 0.07 and record["feature_norm"] is True
    assert set(record["knn"]) == {"1", "5", "50"}
    for k, acc in record["knn"].items():
        assert 0.0 <= acc["top1"] <= acc["top5"] <= 100.0, k
        assert f"{k}-NN classifier result: Top1: {acc['top1']:.2f}" in log
    assert record["knn"]["1"]["top1"] == record["knn"]["1"]["top5"]  # one neighbour, one class
    assert "| loaded         |    35 |" in log  # the checkpoint's weights, every one of them
    assert "50 but only 30 train features" in log


@pytest.mark.dist
def test_two_processes_give_the_same_accuracies(tmp_path, trained):
    cfg, ckpt = trained
    args = (cfg, ckpt, "--num-knn", 1, 3, "--no-feature-norm")
    one = run_knn(*args, "--work-dir", tmp_path / "w1", cwd=tmp_path)
    assert one.returncode == 0, one.stdout + one.stderr
    two = run_knn(*args, "--work-dir", tmp_path / "w2", cwd=tmp_path, nproc=2)
    assert two.returncode == 0, two.stdout + two.stderr
    (r1, _), (r2, _) = knn_record(tmp_path / "w1"), knn_record(tmp_path / "w2")
    assert r1["feature_norm"] is False
    assert r2["num_train"] == 30 and r2["num_val"] == 11  # padding samples dropped again
    assert r1["knn"] == r2["knn"]


def test_bad_input_is_one_clear_line(tmp_path, trained):
    cfg, ckpt = trained
    no_val = tmp_path / "no_val.py"
    no_val.write_text(
        f"_base_ = '{cfg}'\nval_dataloader = None\nval_evaluator = None\nval_cfg = None\n"
    )
    result = run_knn(no_val, ckpt, "--work-dir", tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 2
    assert "val_dataloader" in result.stderr and "--dataset-config" in result.stderr
    # ... which --dataset-config fixes; without CHECKPOINT the config's own weights are used
    result = run_knn(
        no_val, "--dataset-config", cfg, "--num-knn", 2, "--work-dir", tmp_path / "w", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no CHECKPOINT" in knn_record(tmp_path / "w")[1]
    result = run_knn(cfg, tmp_path / "missing.pth", cwd=tmp_path)
    assert result.returncode == 2 and "missing.pth: no such file" in result.stderr
    result = run_knn(cfg, ckpt, "--num-knn", 0, cwd=tmp_path)
    assert result.returncode == 2 and "--num-knn" in result.stderr
    assert not os.path.exists(tmp_path / "work_dirs")  # nothing written for a bad flag
