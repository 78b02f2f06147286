"""Inference forward time on the CPU in the default (NCHW) layout and channels_last, per
model, side by side in one process: the figures behind the classifiers that
``init_model``/``get_model`` run channels_last on the CPU by default
(``CPU_CHANNELS_LAST_BACKBONES`` in vistra/engine/accelerate.py).

Each model is built twice from its config (``channels_last=False`` and ``True``), with
the same initial weights; both forwards of the same random batch alternate ``--repeats``
times. Printed per model: milliseconds per batch each way, their ratio (above 1:
channels_last is faster), the largest output difference, and whether vistra picks
channels_last for it by default.

    python benchmarks/cpu_layout.py [MODEL_OR_CONFIG ...] [--batch-size 8] [--img-size 224]
        [--repeats 5]

A MODEL is a zoo name (``vistra list-models``); with none given, the classifiers of the
default list that are found are measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
DEFAULT_MODELS = (
    str(ROOT / "configs/quickstart/cls_shapes.py"),
    "resnet50_8xb32_in1k",
    "convnext-tiny_32xb128_in1k",
    "densenet121_3rdparty_in1k",
    "efficientnet-b0_3rdparty_8xb32_in1k",
    "mobilenet-v2_8xb32_in1k",
    "mobilenet-v3-small_8xb128_in1k",
    "regnetx-400mf_8xb128_in1k",
    "shufflenet-v2-1x_16xb64_in1k",
    "vit-base-p16_32xb128-mae_in1k",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help="zoo names or config files")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    for name in ("batch_size", "img_size", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def measure(name: str, args: argparse.Namespace) -> dict:
    import torch

    from vistra.apis import get_model
    from vistra.engine.accelerate import inference_channels_last

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nchw = get_model(name, cfg_options={"channels_last": False})
        nhwc = get_model(name, cfg_options={"channels_last": True})
        auto = get_model(name)
    nhwc.load_state_dict(nchw.state_dict())
    size = args.img_size
    x = torch.randn(args.batch_size, 3, size, size)
    inputs = {
        "NCHW": (nchw, x),
        "channels_last": (nhwc, x.contiguous(memory_format=torch.channels_last)),
    }
    times: dict[str, list[float]] = {k: [] for k in inputs}
    with torch.no_grad():
        outs = {k: m(v, mode="tensor") for k, (m, v) in inputs.items()}  # warm-up
        for _ in range(args.repeats):
            for key, (model, batch) in inputs.items():
                start = time.perf_counter()
                model(batch, mode="tensor")
                times[key].append(time.perf_counter() - start)
    a, b = (o[-1] if isinstance(o, tuple | list) else o for o in outs.values())
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {
        "name": Path(name).stem if name.endswith(".py") else name,
        "backbone": type(getattr(nchw, "backbone", None)).__name__,
        **med,
        "ratio": med["NCHW"] / med["channels_last"],
        "diff": float((a - b).abs().max()),
        "default": inference_channels_last(auto, auto.cfg, torch.device("cpu")),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from vistra.apis import list_models

    names = list(args.models)
    if not names:
        known = set(list_models())
        names = [n for n in DEFAULT_MODELS if n.endswith(".py") or n in known]
        missing = [n for n in DEFAULT_MODELS if n not in names]
        if missing:
            print(f"not in the model index here (left out): {', '.join(missing)}")
    print(f"batch {args.batch_size}, {args.img_size} px, {torch.get_num_threads()} threads, "
          f"medians of {args.repeats}")  # fmt: skip
    print(
        "| model | backbone | NCHW ms | channels_last ms | NCHW / channels_last | max diff | vistra's default |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        r = measure(name, args)
        print(f"| {r['name']} | {r['backbone']} | {r['NCHW']:.1f} | {r['channels_last']:.1f} | "
              f"{r['ratio']:.2f} | {r['diff']:.1e} | {'channels_last' if r['default'] else 'NCHW'} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
