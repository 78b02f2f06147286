"""Throughput of ``vistra.apis.inference_model`` next to a bare forward loop, and the
start-up time of ``vistra infer`` to its first prediction, measured side by side.

The API path takes numpy images (BGR uint8, as a user has them) and does everything:
the test pipeline per image, collation, the data preprocessor, ``mode='predict'`` and the
result records. The bare loop feeds the same model tensors that were preprocessed once
beforehand, through ``forward(mode='tensor')``: what the model alone costs. Both run
interleaved batch by batch (``--batches`` per repeat, ``--repeats`` times); the median
batch times give images/s and their ratio. Exits 1
when the ratio is below ``--target`` (default 0.95).

The default model is ResNet-18 for CIFAR (32 px, its test pipeline packs only): a forward
pass of ~6 ms per image, where the API's per-image work is what the target measures. The
quickstart classifier (``--config configs/quickstart/cls_shapes.py --img-size 64``) costs
~0.25 ms per image: there per-image Python work of any kind dominates, and even a
hand-written minimal path (stack the arrays, normalise, forward, arg-max) reached only
0.79-0.82 of the bare loop (docs/en/inference.md).

    python benchmarks/inference.py [--config configs/resnet/resnet18_8xb16_cifar10.py]
        [--batch-size 32] [--batches 4] [--img-size 32] [--repeats 5] [--startup-repeats 3]
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
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/resnet/resnet18_8xb16_cifar10.py"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=4, help="batches per timed repeat")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--startup-repeats", type=int, default=3, help="0 skips the start-up timing")
    p.add_argument("--device", default="cpu")
    p.add_argument("--target", type=float, default=0.95, help="lowest acceptable ratio")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    for name in ("batch_size", "batches", "repeats", "img_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_api(model, batch: list, device: str) -> float:
    from vistra.apis import inference_model

    start = time.perf_counter()
    inference_model(model, batch)
    _sync(device)
    return time.perf_counter() - start


def time_bare(model, x: object, device: str) -> float:
    start = time.perf_counter()
    model(x, mode="tensor")
    _sync(device)
    return time.perf_counter() - start


def preprocessed(model, batch: list) -> object:
    """The model's input tensor for ``batch``, made once, outside the timed loop."""
    from vistra.apis.inference import model_pipeline
    from vistra.apis.inputs import batches, collect_inputs

    items, _ = collect_inputs(batch)
    _, data = next(batches(model_pipeline(model), items, len(items)))
    return model.data_preprocessor(data, False)["inputs"]


def throughput(args: argparse.Namespace, model) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (args.img_size, args.img_size, 3)
    images = [
        [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(args.batch_size)]
        for _ in range(args.batches)
    ]
    tensors = [preprocessed(model, batch) for batch in images]
    time_api(model, images[0], args.device)  # warm-up (allocator, first-call costs)
    time_bare(model, tensors[0], args.device)
    api, bare = [], []
    for _ in range(args.repeats):  # batch by batch, alternating: load drifts hit both alike
        for batch, x in zip(images, tensors):
            api.append(time_api(model, batch, args.device))
            bare.append(time_bare(model, x, args.device))
    api_ips = args.batch_size / statistics.median(api)
    bare_ips = args.batch_size / statistics.median(bare)
    return {"api_images_per_s": api_ips, "bare_images_per_s": bare_ips, "ratio": api_ips / bare_ips}


def startup(args: argparse.Namespace, model, work: Path) -> float | None:
    """Median wall seconds of ``vistra infer CONFIG CKPT IMG`` (a fresh interpreter)."""
    if args.startup_repeats < 1:
        return None
    import numpy as np

    from vistra.checkpoint import save_checkpoint
    from vistra.data.image_io import imwrite

    ckpt = save_checkpoint({"meta": {}, "state_dict": model.state_dict()}, work / "model.pth")
    image = work / "image.png"
    imwrite(np.zeros((args.img_size, args.img_size, 3), np.uint8), image)
    cmd = [sys.executable, "-m", "vistra", "infer", args.config, str(ckpt), str(image),
           "--device", args.device]  # fmt: skip
    times = []
    for _ in range(args.startup_repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"vistra infer failed:\n{done.stderr[-2000:]}")
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from vistra.apis import init_model

    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no checkpoint": weights do not change timings
        model = init_model(args.config, None, args.device)
        figures = throughput(args, model)
        figures["startup_s"] = startup(args, model, Path(tmp))
    figures.update(
        config=os.path.relpath(args.config, ROOT), batch_size=args.batch_size,
        img_size=args.img_size, device=args.device, threads=torch.get_num_threads(),
    )  # fmt: skip
    print(f"| path | images/s (batch {args.batch_size}, {args.img_size} px, {args.device}) |")
    print("|---|---|")
    print(f"| inference_model(numpy images) | {figures['api_images_per_s']:.1f} |")
    print(f"| bare model(x, mode='tensor') | {figures['bare_images_per_s']:.1f} |")
    print(f"ratio api / bare: {figures['ratio']:.3f} (target >= {args.target})")
    if figures["startup_s"] is not None:
        print(f"vistra infer start-up to the first prediction: {figures['startup_s']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["ratio"] >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
