"""Distributed scaling on CPU: 1 vs 2 processes (gloo), all-reduce share, resume cost.

Everything runs through the real entry points (``vistra train`` and ``tools/dist_train.sh``
with torchrun) on the same small ResNet and synthetic data; a hook loaded with
``custom_imports`` times the steps and, on 2 processes, the gradient all-reduce (a DDP
comm hook that all-reduces synchronously and times it, so the share is the blocking
all-reduce time over the step time).

Prints:
  * samples/s with 1 and 2 processes (the same per-process batch) and the speed-up;
  * the all-reduce share of the 2-process step time;
  * the wall time of ``vistra train --resume`` that resumes at iteration 10 and at
    iteration 1000 of an iteration-based run and trains one more step. Without replay
    the two are about equal (ratio ~1); a tool that replays the data loader to reach
    the resume point would take ~100x longer for the second.

    python benchmarks/scaling.py [--iters 60] [--batch-size 16]

On a 2-core machine the 2-process figure is bounded by the cores: both processes share
them, so the speed-up there measures overhead, not the scaling of real hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONFIG = """
custom_imports = dict(imports=['scaling_hooks'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=16, base_channels=16,
                  out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=6, in_channels=128),
    data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=6, mean=[127.5] * 3,
                           std=[64.0] * 3),
)
train_dataloader = dict(
    batch_size={batch}, num_workers=0,
    dataset=dict(type='ShapesDataset', num_samples=4096, num_classes=6, img_size=32, seed=0,
                 pipeline=[dict(type='PackInputs')]),
    sampler=dict(type='InfiniteSampler', shuffle=True))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9))
train_cfg = dict(by_epoch=False, max_iters={iters}, val_interval=100000)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1000),
                     checkpoint=dict(type='CheckpointHook', interval={ckpt_interval},
                                     by_epoch=False, max_keep_ckpts=-1),
                     visualization=dict(type='VisualizationHook', enable=False))
custom_hooks = [dict(type='StepTimingHook', skip=5, out_file='{out}')]
randomness = dict(seed=0)
"""

HOOKS = '''
"""Timing hooks for benchmarks/scaling.py (loaded through custom_imports)."""
import json
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from vistra.engine.hooks import Hook
from vistra.registry import HOOKS


def _timed_allreduce(state, bucket):
    start = time.perf_counter()
    tensor = bucket.buffer()
    dist.all_reduce(tensor)  # synchronous on purpose: its time is the blocking cost
    tensor.div_(dist.get_world_size())
    state["seconds"] += time.perf_counter() - start
    future = torch.futures.Future()
    future.set_result(tensor)
    return future


@HOOKS.register_module()
class StepTimingHook(Hook):
    priority = "LOWEST"

    def __init__(self, skip, out_file):
        self.skip, self.out_file = skip, out_file
        self.comm = {"seconds": 0.0}
        self.steps = 0
        self.start = None

    def before_train(self, runner):
        if isinstance(runner.model, DistributedDataParallel):
            runner.model.register_comm_hook(self.comm, _timed_allreduce)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.steps += 1
        if self.steps == self.skip:
            self.start, self.comm["seconds"] = time.perf_counter(), 0.0

    def after_train(self, runner):
        if runner.rank != 0 or self.start is None:
            return
        timed = self.steps - self.skip
        elapsed = time.perf_counter() - self.start
        with open(self.out_file, "w") as f:
            json.dump({"steps": timed, "seconds": elapsed, "allreduce": self.comm["seconds"]}, f)
'''


def _env(hooks_dir: Path) -> dict:
    return dict(
        os.environ,
        CUDA_VISIBLE_DEVICES="-1",
        PYTHON=sys.executable,
        PYTHONPATH=f"{hooks_dir}{os.pathsep}{REPO}",
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
    )


def _write_config(root: Path, name: str, **fields) -> Path:
    path = root / f"{name}.py"
    path.write_text(CONFIG.format(out=root / f"{name}.json", **fields))
    return path


def _run(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def throughput(root: Path, env: dict, procs: int, iters: int, batch: int) -> dict:
    name = f"throughput_{procs}"
    cfg = _write_config(root, name, batch=batch, iters=iters, ckpt_interval=100000)
    work = root / f"work_{procs}"
    if procs == 1:
        cmd = [sys.executable, "-m", "vistra", "train", str(cfg), "--work-dir", str(work)]
    else:
        cmd = ["bash", str(REPO / "tools" / "dist_train.sh"), str(cfg), str(procs)]
        cmd += ["--work-dir", str(work)]
    _run(cmd, env)
    timing = json.loads((root / f"{name}.json").read_text())
    samples = timing["steps"] * batch * procs
    return {
        "samples_per_s": samples / timing["seconds"],
        "allreduce_share": timing["allreduce"] / timing["seconds"],
    }


def resume_times(root: Path, env: dict, batch: int, repeats: int) -> dict[int, float]:
    """Wall time of ``train --resume`` from iteration 10 and 1000 (one step each)."""
    cfg = _write_config(root, "resume", batch=batch, iters=1000, ckpt_interval=10)
    work = root / "work_resume"
    _run([sys.executable, "-m", "vistra", "train", str(cfg), "--work-dir", str(work)], env)
    times: dict[int, list[float]] = {10: [], 1000: []}
    for _ in range(repeats):
        for at in times:
            cmd = [
                sys.executable,
                "-m",
                "vistra",
                "train",
                str(cfg),
                "--work-dir",
                str(root / f"resumed_{at}"),
                "--resume",
                str(work / f"iter_{at}.pth"),
                "--cfg-options",
                f"train_cfg.max_iters={at + 1}",
            ]
            times[at].append(_run(cmd, env))
    return {at: statistics.median(values) for at, values in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=60, help="training steps per throughput run")
    p.add_argument("--batch-size", type=int, default=16, help="samples per process and step")
    p.add_argument("--repeats", type=int, default=3, help="resume timings per point (median)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="vistra-scaling-") as tmp:
        root = Path(tmp)
        (root / "scaling_hooks.py").write_text(HOOKS)
        env = _env(root)
        one = throughput(root, env, 1, args.iters, args.batch_size)
        two = throughput(root, env, 2, args.iters, args.batch_size)
        resume = resume_times(root, env, args.batch_size, args.repeats)
    print(f"cores: {os.cpu_count()}  batch per process: {args.batch_size}  steps: {args.iters}")
    print(f"samples/s, 1 process : {one['samples_per_s']:.1f}")
    print(
        f"samples/s, 2 processes: {two['samples_per_s']:.1f}  "
        f"(x{two['samples_per_s'] / one['samples_per_s']:.2f})"
    )
    print(
        f"gradient all-reduce share of the 2-process step time: {100 * two['allreduce_share']:.1f}%"
    )
    print(f"resume + 1 step, from iteration 10  : {resume[10]:.2f} s")
    print(
        f"resume + 1 step, from iteration 1000: {resume[1000]:.2f} s  "
        f"(ratio {resume[1000] / resume[10]:.2f}; ~1 means no replay)"
    )


if __name__ == "__main__":
    main()
