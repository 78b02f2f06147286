"""``vistra test CONFIG CHECKPOINT``: the flags of MMPretrain/MMSegmentation's tools/test.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vistra.cli import legacy_flags
from vistra.cli.common import (
    UsageError,
    add_common_arguments,
    load_config,
    run_reporting_errors,
    set_dataloader_defaults,
)
from vistra.cli.errors import ArgumentParser
from vistra.config import Config

FILE_SUFFIXES = (".pkl", ".pickle", ".json", ".yaml", ".yml")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="vistra test", description="Test a checkpoint on a config's test set.")
    p.add_argument("config", help="config file (.py/.json/.yaml)")
    p.add_argument("checkpoint", help="checkpoint file or http(s) URL")
    add_common_arguments(p)
    p.add_argument(
        "--out",
        help="predictions/metrics file (.pkl/.json/.yaml), or a directory of per-image PNGs (segmentation)",
    )
    p.add_argument(
        "--out-item",
        choices=["pred", "metrics"],
        default=None,
        help="what --out holds (default pred)",
    )
    p.add_argument("--show", action="store_true", help="show predictions in a window")
    p.add_argument(
        "--show-dir",
        help="write prediction images here (relative paths go under the run's log dir)",
    )
    p.add_argument("--interval", type=int, default=1, help="draw every N-th sample")
    p.add_argument("--wait-time", type=float, default=2.0, help="seconds each shown image stays up")
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation (tta_model / tta_pipeline in the config)",
    )
    p.add_argument("--amp", action="store_true", help="mixed-precision inference")
    legacy_flags.add_test_arguments(p)
    return p


def out_kind(out: str | None, out_item: str | None) -> str | None:
    """'file' or 'dir' for --out, with clear errors for what cannot work."""
    if out is None:
        if out_item is not None:
            raise UsageError("--out-item needs --out PATH")
        return None
    suffix = Path(out).suffix.lower()
    if suffix in FILE_SUFFIXES:
        return "file"
    if suffix:
        raise UsageError(
            f"--out {out}: unsupported extension {suffix!r}; use one of {', '.join(FILE_SUFFIXES)} or a directory (no extension) for per-image PNGs"
        )
    if out_item == "metrics":
        raise UsageError(
            f"--out {out} is a directory; --out-item metrics needs a .json/.yaml/.pkl file"
        )
    return "dir"


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Map flags onto config keys the way the OpenMMLab tools do; --cfg-options last."""
    cfg.load_from = args.checkpoint
    legacy_flags.apply_test_flags(cfg, args)
    if args.amp:
        cfg.test_cfg = {**(cfg.get("test_cfg") or {}), "fp16": True}
    if args.show or args.show_dir:
        hooks = dict(cfg.get("default_hooks") or {})
        vis = dict(hooks.get("visualization") or dict(type="VisualizationHook"))
        vis.update(
            enable=True,
            show=args.show,
            wait_time=args.wait_time,
            out_dir=args.show_dir,
            interval=args.interval,
        )
        if vis.get("type", "").endswith("SegVisualizationHook"):
            vis["draw"] = True
        hooks["visualization"] = vis
        cfg.default_hooks = hooks
    if args.tta:
        if _is_classification(cfg):  # MMPretrain's tools/test.py defaults: flip TTA
            from vistra.models.classifiers_tta import flip_tta_pipeline

            if cfg.get("tta_model") is None:
                cfg.tta_model = dict(type="AverageClsScoreTTA")
            if cfg.get("tta_pipeline") is None:
                cfg.tta_pipeline = flip_tta_pipeline(cfg.test_dataloader.dataset.pipeline)
        if cfg.get("tta_model") is None or cfg.get("tta_pipeline") is None:
            raise UsageError("--tta needs tta_model and tta_pipeline in the config")
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.model = {**cfg.tta_model, "module": cfg.model}
    kind = out_kind(args.out, args.out_item)
    if kind == "dir":
        evaluator = cfg.test_evaluator
        metrics = evaluator if isinstance(evaluator, list) else [evaluator]
        iou = [m for m in metrics if str(m.get("type", "")).endswith("IoUMetric")]
        if not iou:
            raise UsageError(
                f"--out {args.out} (a directory of prediction PNGs) needs a segmentation test_evaluator (IoUMetric)"
            )
        for m in iou:
            m["output_dir"] = args.out
    elif kind == "file" and args.out_item in (None, "pred"):
        extra = dict(type="DumpResults", out_file_path=args.out)
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = (list(evaluator) if isinstance(evaluator, list) else [evaluator]) + [
            extra
        ]
    set_dataloader_defaults(cfg, args.no_pin_memory)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    check_format_only(cfg.get("test_evaluator"))
    return cfg


def _is_classification(cfg: Any) -> bool:
    """An MMPretrain-scoped config or a classifier model (``--tta`` then has defaults)."""
    scope = str(cfg.get("default_scope") or "")
    model_type = str((cfg.get("model") or {}).get("type", ""))
    return scope in ("mmpretrain", "mmcls") or model_type.endswith("Classifier")


def check_format_only(evaluator: object) -> None:
    """``format_only=True`` writes predictions and computes no scores: it needs a folder."""
    metrics = evaluator if isinstance(evaluator, list) else [evaluator]
    for i, metric in enumerate(metrics):
        if isinstance(metric, dict) and metric.get("format_only") and not metric.get("output_dir"):
            key = "test_evaluator" if metrics is not evaluator else f"test_evaluator[{i}]"
            raise UsageError(
                f"{key}.format_only=True only writes the predictions, as PNGs, and needs a "
                "folder for them: add --out DIR (or set "
                f"{key}.output_dir=DIR); to compute the scores leave format_only unset"
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        from vistra.engine.runner import Runner
        from vistra.evaluation.dump import dump_file, to_plain

        legacy_flags.resolve_test_flags(args)
        cfg, args.cfg_options = load_config(
            args.config, args.work_dir, args.launcher, args.local_rank, args.cfg_options
        )
        cfg = merge_args(cfg, args)
        runner = Runner.from_config(cfg, legacy_flags.single_gpu_dist(args), purpose="test")
        metrics = runner.test()
        if args.out and args.out_item == "metrics" and runner.rank == 0:
            dump_file(to_plain(metrics), args.out)

    return run_reporting_errors(run)


if __name__ == "__main__":
    raise SystemExit(main())
