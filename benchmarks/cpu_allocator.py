"""What vistra's CPU allocator tuning (vistra/engine/allocator.py) changes, side by side.

The same model and input run in fresh interpreters, alternating between glibc's default
allocator settings (``VISTRA_CPU_ALLOCATOR=default``) and the tuned ones that ``vistra
train|test|infer`` apply: ``--repeats`` pairs, each child timing ``--iters`` training steps
(forward, cross-entropy, backward, SGD step) and as many inference forwards. Printed, as
medians over the pairs: milliseconds per step, minor page faults per step and the child's
peak resident memory, with the default/tuned time ratio (above 1: tuning is faster).

    python benchmarks/cpu_allocator.py [--config configs/quickstart/cls_shapes.py]
        [--batch-size 32] [--img-size 64] [--iters 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
MODES = ("default", "tuned")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/quickstart/cls_shapes.py"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=20, help="timed steps per child and task")
    p.add_argument("--repeats", type=int, default=3, help="default/tuned pairs of children")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("batch_size", "img_size", "iters", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def child(args: argparse.Namespace) -> dict:
    """Time both tasks in this process (already started with its allocator settings)."""
    import resource
    import time
    import warnings

    import torch
    import torch.nn.functional as F

    from vistra.apis import init_model
    from vistra.engine.allocator import tune_cpu_allocator

    state = tune_cpu_allocator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no checkpoint": weights do not change timings
        model = init_model(args.config, None, "cpu")
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    out = {"tuned": state.tuned}

    def timed(step) -> tuple[float, float]:
        for _ in range(3):  # warm-up: first-call costs, the allocator's first growth
            step()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        return statistics.median(times) * 1e3, faults / args.iters

    model.train()
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    logits = model(x, mode="tensor")
    target = torch.randint(0, logits.shape[1], (args.batch_size,))

    def train_step() -> None:
        loss = F.cross_entropy(model(x, mode="tensor"), target)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    out["train_ms"], out["train_faults"] = timed(train_step)
    model.eval()
    with torch.no_grad():
        out["infer_ms"], out["infer_faults"] = timed(lambda: model(x, mode="tensor"))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(args: argparse.Namespace, mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["VISTRA_CPU_ALLOCATOR"] = mode
    cmd = [sys.executable, __file__, "--child", mode, "--config", args.config,
           "--batch-size", str(args.batch_size), "--img-size", str(args.img_size),
           "--iters", str(args.iters)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {mode} child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for i in range(args.repeats):  # alternate the order: machine drift hits both alike
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            runs[mode].append(run_child(args, mode))
    if not runs["tuned"][0]["tuned"]:
        print("note: this C library is not glibc, or the settings were refused: both runs "
              "use the default allocator")  # fmt: skip

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    config = os.path.relpath(args.config, ROOT)
    print(f"{config}, batch {args.batch_size}, {args.img_size} px, {args.iters} steps, "
          f"{args.repeats} pairs of fresh processes (medians)")  # fmt: skip
    print(
        "| allocator | train ms/step | faults/step | infer ms/batch | faults/batch | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|")
    for mode in MODES:
        print(f"| {mode} | {med(mode, 'train_ms'):.1f} | {med(mode, 'train_faults'):.0f} | "
              f"{med(mode, 'infer_ms'):.1f} | {med(mode, 'infer_faults'):.0f} | "
              f"{med(mode, 'peak_rss_mb'):.0f} |")  # fmt: skip
    for task in ("train", "infer"):
        ratio = statistics.median(
            d[f"{task}_ms"] / t[f"{task}_ms"] for d, t in zip(runs["default"], runs["tuned"])
        )
        print(f"{task}: default / tuned time = {ratio:.3f} (above 1: the tuning is faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
