"""Helpers for end-to-end tests: run the real CLI in a subprocess, read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]

# A tiny classifier on in-memory synthetic shapes: trains in seconds on CPU.
TINY_CLS = """
custom_imports = dict(imports=['recording_hooks'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes={num_classes}, in_channels=64, topk=(1, )),
)
data_preprocessor = dict(num_classes={num_classes}, mean=[127.5, 127.5, 127.5], std=[64.0, 64.0, 64.0], to_rgb=True)
train_pipeline = [dict(type='RandomFlip', prob=0.5), dict(type='PackInputs')]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=4, num_workers={num_workers},
    dataset=dict(type='ShapesDataset', num_samples=24, num_classes={num_classes}, img_size=32, seed=0, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(type='ShapesDataset', num_samples=10, num_classes={num_classes}, img_size=32, seed=0, split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=4),
                   dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end={max_epochs})]
train_cfg = dict(by_epoch=True, max_epochs={max_epochs}, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(type='LoggerHook', interval=2), checkpoint=dict(type='CheckpointHook', interval=1, save_best='auto'),
                     visualization=dict(type='VisualizationHook', enable=False))
randomness = dict(seed=7)
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, cwd: Path, timeout: int = 300, env: dict | None = None) -> Result:
    """``python -m vistra ARGS`` on CPU, with tests/helpers importable (custom_imports)."""
    full_env = dict(
        os.environ, CUDA_VISIBLE_DEVICES="-1", PYTHONPATH=str(REPO / "tests" / "helpers")
    )
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "vistra", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def run_dirs(work_dir: Path) -> list[Path]:
    """The timestamped run folders of a work dir, oldest first."""
    return sorted(p for p in Path(work_dir).iterdir() if p.is_dir() and p.name[:8].isdigit())


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different[:5]}"


def tool_env(env: dict | None = None) -> dict:
    """Environment for ``tools/*.sh`` on CPU: this interpreter, helpers importable, one
    thread per process (several processes share 2 cores)."""
    full = dict(
        os.environ,
        CUDA_VISIBLE_DEVICES="-1",
        PYTHON=sys.executable,
        PYTHONPATH=str(REPO / "tests" / "helpers"),
        OMP_NUM_THREADS="1",
    )
    # a launcher's variables from the calling environment must not leak into the job
    for var in ("PORT", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        full.pop(var, None)
    full.update(env or {})
    return full


def start_tool(script: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """``bash tools/SCRIPT ARGS`` in the background (output captured as text)."""
    return subprocess.Popen(
        ["bash", str(REPO / "tools" / script), *map(str, args)],
        cwd=cwd,
        env=tool_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_tool(proc: subprocess.Popen, timeout: int = 300) -> str:
    """The output of a :func:`start_tool` process; its whole process group is killed (and
    the test fails) when it runs over ``timeout`` seconds."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        raise AssertionError(
            f"{' '.join(proc.args)} ran over {timeout} s:\n{out[-4000:]}"
        ) from None
    return out


def run_tool(
    script: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300
) -> Result:
    proc = start_tool(script, *args, cwd=cwd, env=env)
    out = wait_tool(proc, timeout)
    return Result(proc.returncode, out, "")


def last_checkpoint(work_dir: Path) -> Path:
    return Path(work_dir) / (Path(work_dir) / "last_checkpoint").read_text().strip()


def write_cfg(
    tmp_path: Path,
    name: str = "tiny.py",
    *,
    batch: int = 4,
    max_epochs: int = 2,
    hooks=(),
    extra: str = "",
) -> Path:
    """TINY_CLS with ``batch`` per process, ``custom_hooks`` and extra lines."""
    text = TINY_CLS.format(num_classes=3, max_epochs=max_epochs, num_workers=0)
    text += f"\ntrain_dataloader['batch_size'] = {batch}\n{extra}"
    if hooks:
        text += f"\ncustom_hooks = [{', '.join(hooks)}]\n"
    path = tmp_path / name
    path.write_text(text)
    return path


def record(tmp_path: Path, name: str) -> str:
    """A RecordBatchesHook writing ``name_{rank}.jsonl`` under ``tmp_path``."""
    return f"dict(type='RecordBatchesHook', out_file='{tmp_path}/{name}_{{rank}}.jsonl')"
