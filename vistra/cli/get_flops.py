"""``vistra get-flops CONFIG [--shape H [W]]``: FLOPs and parameters per module.

MMPretrain's and MMSegmentation's ``tools/analysis_tools/get_flops.py`` in one command.
FLOPs are multiply-adds, as their tables report (see :mod:`vistra.analysis.flops`).
"""

from __future__ import annotations

import argparse
from typing import Any

from vistra.cli.common import UsageError, add_cfg_options, load_config, run_reporting_errors
from vistra.cli.errors import ArgumentParser
from vistra.config import ConfigError
from vistra.registry import RegistryError

SPLIT = "=" * 30
_CONFIG_ERRORS = (UsageError, ConfigError, RegistryError)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="vistra get-flops", description="FLOPs and parameters of a model.")
    p.add_argument("config", help="config file (.py/.json/.yaml)")
    p.add_argument(
        "--shape",
        type=int,
        nargs="+",
        metavar="SIZE",
        help="input H [W] (one value: square); default from the config's test pipeline / "
        "crop size, else 224",
    )
    p.add_argument(
        "--depth", type=int, default=2, help="module levels in the table (default 2; 0: none)"
    )
    add_cfg_options(p, "model.backbone.depth=101")
    return p


def input_shape(args: argparse.Namespace, cfg: Any) -> tuple[tuple[int, int, int], str]:
    """``(C, H, W)`` and where H and W come from; C is the backbone's ``in_channels``
    (3 unless the config says otherwise)."""
    from vistra.analysis.flops import input_size

    backbone = (cfg.get("model") or {}).get("backbone") or {}
    channels = backbone.get("in_channels", 3) if isinstance(backbone, dict) else 3
    channels = channels if isinstance(channels, int) and channels > 0 else 3
    if args.shape is None:
        h, w, source = input_size(cfg)
        return (channels, h, w), f"from {source}"
    if len(args.shape) > 2 or min(args.shape) <= 0:
        raise UsageError(f"--shape {' '.join(map(str, args.shape))}: give H or H W (positive)")
    h, w = args.shape if len(args.shape) == 2 else args.shape * 2
    return (channels, h, w), "from --shape"


def measure(cfg: Any, shape: tuple[int, int, int], depth: int) -> Any:
    """Count on the meta device; a model that cannot run there is counted on the CPU.

    A model whose constructor reads values (``torch.linspace(...).tolist()`` for drop-path
    rates) cannot be built on meta: it is built on the CPU and moved there.
    """
    from vistra.analysis.building import build_model
    from vistra.analysis.flops import count_complexity

    def forward(model: Any, image: Any) -> Any:
        return model(image, mode="tensor")

    try:
        model = build_model(cfg, "meta")
    except _CONFIG_ERRORS:
        raise  # a mistake in the config fails the same way on the CPU
    except Exception:  # noqa: BLE001 (a constructor that needs real values)
        model = build_model(cfg).to("meta")
    try:
        return count_complexity(model, shape, forward, depth)
    except _CONFIG_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 (an op without a meta kernel, a value read)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    result = count_complexity(build_model(cfg), shape, forward, depth)
    result.note = f"counted on the CPU: the model does not run on the meta device ({reason})"
    return result


def report(cfg: Any, result: Any, where: str, depth: int) -> str:
    from vistra.analysis.flops import format_size, format_table

    lines = [format_table(result)] if depth > 0 else []
    lines += [
        SPLIT,
        f"Input shape: {result.input_shape} ({where})",
        f"Flops: {format_size(result.flops)}",
        f"Params: {format_size(result.params)}",
        SPLIT,
    ]
    aux = next((m for m in result.modules if m.name == "auxiliary_head"), None)
    if aux is not None and aux.params:
        lines.append(
            f"auxiliary_head: {format_size(aux.params)} of the parameters, run in training "
            f"only (without it: {format_size(result.params - aux.params)}; 0 FLOPs here)"
        )
    model_cfg = cfg.get("model") or {}
    counted = "forward(mode='tensor')"
    if "decode_head" in model_cfg:
        counted += ": backbone, neck and decode_head logits"
    elif str(model_cfg.get("type", "")).endswith("Classifier") and model_cfg.get("head"):
        counted += ": backbone, neck and head (the logits)"
    lines += [
        f"Counted: {counted}, one image.",
        "FLOPs are multiply-adds, as in MMPretrain's and MMSegmentation's tables "
        "(torch's FlopCounterMode counts 2 per multiply-add; halved here).",
    ]
    if result.note:
        lines.append(f"Note: {result.note}")
    lines.append(
        "!!!Please be cautious if you use the results in papers: element-wise operations "
        "(activations, additions, max pooling) are not counted."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        if args.depth < 0:
            raise UsageError(f"--depth {args.depth}: must be 0 or more")
        cfg, remaining = load_config(args.config, None, "none", 0, args.cfg_options)
        if remaining:
            cfg.merge_from_dict(remaining)
        shape, where = input_shape(args, cfg)
        result = measure(cfg, shape, args.depth)
        print(report(cfg, result, where, args.depth))

    return run_reporting_errors(run)


if __name__ == "__main__":
    raise SystemExit(main())
