"""``vistra export CONFIG CHECKPOINT --format onnx|torchscript|exported-program|safetensors``.

Also ``python tools/deployment/export.py`` with the same flags. The exported graph takes
a normalised ``(N, 3, H, W)`` float batch (``--with-preprocess``: the raw ``uint8`` batch,
normalised inside the graph) and returns class scores/logits or segmentation
logits/scores/labels at the input size; the artefact is verified against PyTorch before
it is written (see :mod:`vistra.deployment`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vistra.cli.common import UsageError, add_cfg_options, load_config, run_reporting_errors
from vistra.cli.errors import ArgumentParser

if TYPE_CHECKING:  # the deployment package imports torch: only when the command runs
    from vistra.deployment.export import ExportOptions

FORMAT_NAMES = ("onnx", "torchscript", "exported-program", "safetensors")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="vistra export",
        description="Export a trained model, checked against PyTorch before it is written.",
    )
    p.add_argument("config", help="config file (.py/.json/.yaml)")
    p.add_argument("checkpoint", help="checkpoint file (.pth or .safetensors) or http(s) URL")
    p.add_argument("--format", required=True, choices=FORMAT_NAMES, help="what to write")
    p.add_argument(
        "--out", help="output file (default: the checkpoint's path with the format's suffix)"
    )
    p.add_argument(
        "--shape",
        type=int,
        nargs="+",
        metavar="N",
        help="input H W (or one value for both; default: the config's test size)",
    )
    p.add_argument("--batch", type=int, default=1, help="batch size of the example input")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (axis 0)")
    p.add_argument("--dynamic-shape", action="store_true", help="any height and width")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument(
        "--no-optimize",
        action="store_true",
        help="ONNX: skip the exporter's graph optimisation (a faster export; onnxruntime "
        "optimises the graph when it loads it anyway)",
    )
    p.add_argument(
        "--output",
        choices=["scores", "logits", "labels"],
        default=None,
        help="classifier: scores (softmax/sigmoid as the head predicts; default) or logits; "
        "segmentor: logits (default), scores or labels (argmax)",
    )
    p.add_argument(
        "--with-preprocess",
        action="store_true",
        help="take uint8 images and normalise inside the graph (default: normalised float input)",
    )
    p.add_argument(
        "--atol", type=float, default=1e-4, help="largest abs difference to PyTorch allowed"
    )
    p.add_argument("--device", default="cpu", help="device to trace and verify on (cpu, cuda)")
    add_cfg_options(p, "model.test_cfg.mode=whole")
    return p


def check_flags(args: argparse.Namespace) -> None:
    """Flag values and combinations that cannot work: one line, before any model loads."""
    if args.shape is not None and (len(args.shape) not in (1, 2) or min(args.shape) < 1):
        raise UsageError(f"--shape takes H W (or one size), positive, got {args.shape}")
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    if args.atol < 0:
        raise UsageError(f"--atol must be >= 0, got {args.atol}")
    if args.format == "safetensors" and (args.output or args.with_preprocess):
        raise UsageError(
            "--format safetensors writes the weights only: --output and --with-preprocess "
            "do not apply"
        )
    for flag, given in (("--opset", args.opset is not None), ("--no-optimize", args.no_optimize)):
        if given and args.format != "onnx":
            raise UsageError(f"{flag} is for --format onnx, not {args.format}")
    if args.out is not None and Path(args.out).suffix == ".pth":
        raise UsageError(f"--out {args.out} would overwrite a checkpoint; choose another file")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: no CUDA device is available; use cpu")


def options(args: argparse.Namespace, cfg: Any, task: str) -> ExportOptions:
    """The export's options from the (checked) flags; the input size from the config
    when ``--shape`` is not given."""
    from vistra.deployment.export import ExportOptions
    from vistra.deployment.model import default_shape

    if args.shape is None:
        shape = default_shape(cfg, task)
    else:
        shape = (args.shape[0], args.shape[-1])
    return ExportOptions(
        format=args.format,
        shape=shape,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        dynamic_shape=args.dynamic_shape,
        opset=args.opset,
        output=args.output,
        with_preprocess=args.with_preprocess,
        atol=args.atol,
        device=args.device,
        optimize=not args.no_optimize,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        from vistra.deployment.export import FORMATS, export
        from vistra.deployment.model import load_model

        check_flags(args)
        out = Path(args.out) if args.out else _default_out(args.checkpoint, FORMATS[args.format])
        if out.resolve() == Path(args.checkpoint).resolve():
            raise UsageError(f"--out {out} is the checkpoint itself; choose another file")
        cfg, rest = load_config(args.config, None, "none", 0, args.cfg_options)
        if rest:
            cfg.merge_from_dict(rest)
        loaded = load_model(cfg, args.checkpoint, args.device)
        opts = options(args, cfg, loaded.task)
        shape = "x".join(map(str, (opts.batch, 3, *opts.shape)))
        print(
            f"exporting {loaded.task} model {Path(args.config).name} as {args.format}, input {shape}"
        )
        path = export(loaded, opts, out, Path(args.config).stem)
        print(f"wrote {path}")

    return run_reporting_errors(run)


def _default_out(checkpoint: str, suffix: str) -> Path:
    if "://" in checkpoint:  # a URL: the file goes to the current directory
        return Path(Path(checkpoint.split("?")[0]).name).with_suffix(suffix)
    return Path(checkpoint).with_suffix(suffix)


if __name__ == "__main__":
    raise SystemExit(main())
