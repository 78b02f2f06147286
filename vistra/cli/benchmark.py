"""``vistra benchmark CONFIG [CHECKPOINT]``: inference images/s on the current device.

MMSegmentation's ``tools/analysis_tools/benchmark.py`` (same output lines, same
``fps_<timestamp>.json`` in the work dir), for classifiers and segmentors alike, with
the batch size, iteration counts and device as flags. See :mod:`vistra.analysis.speed`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from vistra.cli.common import UsageError, add_cfg_options, load_config, notice, run_reporting_errors
from vistra.cli.errors import ArgumentParser


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="vistra benchmark", description="Inference speed of a model.")
    p.add_argument("config", help="config file (.py/.json/.yaml)")
    p.add_argument(
        "checkpoint", nargs="?", help="checkpoint file (without one: random weights, same speed)"
    )
    p.add_argument("--batch-size", type=int, default=1, help="images per batch (default 1)")
    p.add_argument(
        "--num-iters", type=int, default=200, help="batches to run, warm-up included (200)"
    )
    p.add_argument("--num-warmup", type=int, default=5, help="first batches not timed (5)")
    p.add_argument("--log-interval", type=int, default=50, help="print fps every N batches (50)")
    p.add_argument("--repeat-times", type=int, default=1, help="repeat the measurement N times")
    p.add_argument(
        "--device", default=None, help="torch device, e.g. cuda:1 or cpu (default: cuda if any)"
    )
    p.add_argument(
        "--work-dir",
        "--work_dir",
        dest="work_dir",
        help="where fps_<timestamp>.json goes (default ./work_dirs/<config name>)",
    )
    add_cfg_options(p, "test_dataloader.num_workers=4")
    return p


def check_args(args: argparse.Namespace) -> None:
    for flag, value, least in (
        ("--batch-size", args.batch_size, 1),
        ("--num-iters", args.num_iters, 1),
        ("--num-warmup", args.num_warmup, 0),
        ("--repeat-times", args.repeat_times, 1),
        ("--log-interval", args.log_interval, 0),
    ):
        if value < least:
            raise UsageError(f"{flag} {value}: must be {least} or more")
    if args.num_iters <= args.num_warmup:
        raise UsageError(
            f"--num-iters {args.num_iters} must be larger than --num-warmup {args.num_warmup} "
            "(the warm-up batches are not timed)"
        )


def pick_device(name: str | None) -> Any:
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"--device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available here; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def prepare(args: argparse.Namespace, cfg: Any, device: Any) -> tuple[Any, Any]:
    """The model on ``device`` (weights from CHECKPOINT, else random) and the loader."""
    from vistra.analysis.building import build_model, load_checkpoint
    from vistra.engine.accelerate import inference_channels_last, use_channels_last
    from vistra.engine.build import build_dataloader
    from vistra.registry import default_scope

    if cfg.get("test_dataloader") is None:
        raise UsageError(f"{args.config} has no test_dataloader to take the images from")
    cfg.test_dataloader = {**cfg.test_dataloader, "batch_size": args.batch_size}
    model = build_model(cfg)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    else:
        notice("no CHECKPOINT given: the model has random weights (its speed is the same)")
    with default_scope(cfg.get("default_scope")):
        loader = build_dataloader(
            cfg.test_dataloader,
            "test_dataloader",
            seed=0,
            rank=0,
            pin_memory_default=device.type == "cuda",
        )
    model.to(device)
    if inference_channels_last(model, cfg, device):  # the layout vistra infer predicts in
        use_channels_last(model)
    return model, loader


def write_json(path: Path, record: dict) -> None:
    from vistra.checkpoint import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=4) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        import torch

        from vistra.analysis.speed import describe_device, summary, time_inference
        from vistra.engine.allocator import tune_cpu_allocator

        check_args(args)
        tune_cpu_allocator()  # the set-up vistra test and vistra infer run with
        cfg, remaining = load_config(args.config, args.work_dir, "none", 0, args.cfg_options)
        if remaining:
            cfg.merge_from_dict(remaining)
        device = pick_device(args.device)
        torch.backends.cudnn.benchmark = False  # as upstream: fixed algorithms, steady timings
        model, loader = prepare(args, cfg, device)
        print(
            f"Benchmark on {describe_device(device)}: batch size {args.batch_size}, "
            f"{args.num_iters} batches, the first {args.num_warmup} not timed"
        )
        runs = []
        for index in range(args.repeat_times):
            print(f"Run {index + 1}:")
            runs.append(
                time_inference(
                    model, loader, args.num_iters, args.num_warmup, args.log_interval, device
                )
            )
        figures = summary(runs)
        print(f"Average fps of {args.repeat_times} evaluations: {figures['average_fps']}")
        print(f"The variance of {args.repeat_times} evaluations: {figures['fps_variance']}")
        record = dict(
            config=args.config,
            checkpoint=args.checkpoint,
            unit="img / s",
            device=describe_device(device),
            batch_size=args.batch_size,
            num_iters=args.num_iters,
            num_warmup=args.num_warmup,
            **figures,
        )
        out = Path(cfg.work_dir) / f"fps_{time.strftime('%Y%m%d_%H%M%S')}.json"
        write_json(out, record)
        print(f"results saved to {out}")

    return run_reporting_errors(run)


if __name__ == "__main__":
    raise SystemExit(main())
