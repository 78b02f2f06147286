"""The 0.x command-line flags of tools/train.py and tools/test.py, mapped onto 1.x ones.

MMSegmentation 0.x, MMClassification 0.x and MMSelfSup 0.x scripts still call the tools
with ``--options``, ``--gpu-id``, ``--auto-resume``, ``--eval mIoU``, ``--metrics accuracy``
and so on. Each such flag does what its 1.x flag or config key does and prints one
deprecation notice naming the 1.x spelling. Two steps, because ``--options`` must reach
``load_config`` as ``--cfg-options`` does while the rest need the loaded config:

- ``resolve_train_flags`` / ``resolve_test_flags`` (before the config is loaded) rewrite
  the parsed arguments into their 1.x equivalents, check them, and print the notices;
- ``apply_train_flags`` / ``apply_test_flags`` (after it is loaded, before
  ``--cfg-options`` is merged) set the config keys that have no 1.x flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vistra.cli.common import UsageError, notice
from vistra.config import CfgOptionsAction, Config
from vistra.config.errors import did_you_mean
from vistra.config.legacy.runtime import CLS_ITEMS, SEG_METRICS

if TYPE_CHECKING:
    from vistra.dist.launch import DistInfo

CLS_METRICS = ("accuracy", *CLS_ITEMS)
OUT_ITEMS = ("all", "none", "class_scores", "pred_score", "pred_label", "pred_class")
CLS_OPTION_KEYS = ("topk", "thrs", "average_mode")
# --eval-options keys of MMSegmentation 0.x, besides IoUMetric's own arguments
SEG_OPTION_KEYS = ("imgfile_prefix", "efficient_test")
IOU_ARGS = ("ignore_index", "nan_to_num", "beta", "collect_device", "prefix")
AVERAGE_MODES = {"macro": "macro", "micro": "micro", "none": None}


def _deprecated(flag: str, instead: str) -> None:
    notice(f"{flag} is a 0.x flag (deprecated); {instead}")


# ----------------------------------------------------------------------------- parsers
def _add_shared_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--options",
        nargs="+",
        action=CfgOptionsAction,
        default=None,
        metavar="KEY=VALUE",
        help="same as --cfg-options",
    )
    group.add_argument(
        "--gpu-id",
        dest="gpu_id",
        type=int,
        default=None,
        metavar="N",
        help="single-process run on cuda:N",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The 0.x flags of MMSegmentation/MMClassification's tools/train.py."""
    g = parser.add_argument_group("0.x flags (deprecated; each prints a notice)")
    _add_shared_arguments(g)
    g.add_argument("--resume-from", dest="resume_from", metavar="PATH", help="--resume PATH")
    g.add_argument("--auto-resume", action="store_true", help="--resume (latest checkpoint)")
    g.add_argument(
        "--gpu-ids",
        dest="gpu_ids",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="uses the first only",
    )
    g.add_argument("--gpus", type=int, default=None, metavar="N", help="one process on cuda:0")
    g.add_argument(
        "--diff-seed",
        "--diff_seed",
        dest="diff_seed",
        action="store_true",
        help="a different seed on every rank (randomness.diff_rank_seed=True)",
    )


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    """The 0.x flags of MMSegmentation/MMClassification's tools/test.py."""
    g = parser.add_argument_group("0.x flags (deprecated; each prints a notice)")
    _add_shared_arguments(g)
    g.add_argument(
        "--eval", nargs="+", metavar="METRIC", help="mIoU mDice mFscore | accuracy precision ..."
    )
    g.add_argument("--metrics", nargs="+", metavar="METRIC", help="same as --eval")
    for flag, keys in (
        ("--eval-options", "imgfile_prefix=DIR, efficient_test, IoUMetric arguments"),
        ("--metric-options", "topk=(1,5) thrs=... average_mode=macro|micro|none"),
    ):
        g.add_argument(
            flag,
            nargs="+",
            action=CfgOptionsAction,
            default=None,
            metavar="KEY=VALUE",
            help=f"metric arguments: {keys}",
        )
    g.add_argument("--format-only", action="store_true", help="write PNGs, compute no scores")
    g.add_argument(
        "--out-items",
        nargs="+",
        choices=OUT_ITEMS,
        metavar="ITEM",
        help=f"{'|'.join(OUT_ITEMS)}: none is --out-item metrics, the others --out-item pred",
    )
    g.add_argument(
        "--opacity", type=float, metavar="F", help="segmentation overlay opacity, (0, 1]"
    )
    g.add_argument("--aug-test", action="store_true", help="same as --tta")
    g.add_argument("--gpu-collect", action="store_true", help="accepted, no effect")
    g.add_argument("--tmpdir", metavar="DIR", help="accepted, no effect")


# ----------------------------------------------------------------------------- before loading
def resolve_train_flags(args: argparse.Namespace) -> None:
    """Rewrite the 0.x train flags in ``args`` as 1.x ones; print one notice per flag."""
    _resolve_options(args)
    _resolve_gpu(args)
    if args.resume_from:
        if args.resume is not None:
            raise UsageError("--resume-from and --resume both given; keep --resume PATH")
        _deprecated("--resume-from", "use --resume PATH")
        args.resume = args.resume_from
    if args.auto_resume:
        if args.resume in (None, "auto"):
            args.resume = "auto"
            _deprecated("--auto-resume", "use --resume (no path): the latest checkpoint")
        else:  # as in 0.x, a named checkpoint wins
            _deprecated("--auto-resume", f"ignored, as in 0.x: resuming from {args.resume}")
    if args.diff_seed:
        _deprecated("--diff-seed", "use --cfg-options randomness.diff_rank_seed=True")


def resolve_test_flags(args: argparse.Namespace) -> None:
    """Rewrite the 0.x test flags in ``args`` as 1.x ones; print one notice per flag."""
    _resolve_options(args)
    _resolve_gpu(args)
    if args.eval and args.metrics:
        raise UsageError("--eval and --metrics both given; they are the same flag: keep one")
    if args.eval or args.metrics:
        args.eval_flag = "--eval" if args.eval else "--metrics"
        args.eval = list(dict.fromkeys(args.eval or args.metrics))
        _deprecated(args.eval_flag, "set test_evaluator in the config or with --cfg-options")
    if args.format_only:
        if args.eval:
            raise UsageError("--format-only computes no scores; drop it or --eval/--metrics")
        _deprecated(
            "--format-only", "use --cfg-options test_evaluator.format_only=True and --out DIR"
        )
    args.metric_args = _resolve_metric_options(args)
    _resolve_out_items(args)
    if args.opacity is not None:
        if not 0.0 < args.opacity <= 1.0:
            raise UsageError(f"--opacity {args.opacity}: the overlay opacity must be in (0, 1]")
        _deprecated("--opacity", f"use --cfg-options visualizer.alpha={args.opacity}")
    if args.aug_test:
        args.tta = True
        _deprecated("--aug-test", "use --tta")
    for flag, value in (("--gpu-collect", args.gpu_collect), ("--tmpdir", args.tmpdir)):
        if value:
            notice(f"{flag} has no effect: results are always gathered through torch.distributed")


def _resolve_options(args: argparse.Namespace) -> None:
    if args.options is None:
        return
    if args.cfg_options is not None:
        raise UsageError(
            "--options and --cfg-options both given; --options is the 0.x name of "
            "--cfg-options: keep --cfg-options"
        )
    _deprecated("--options", "use --cfg-options")
    args.cfg_options = args.options


def _resolve_metric_options(args: argparse.Namespace) -> dict[str, Any]:
    """--eval-options and --metric-options as one dict (both went to the 0.x evaluate)."""
    merged: dict[str, Any] = {}
    for flag, options in (
        ("--eval-options", args.eval_options),
        ("--metric-options", args.metric_options),
    ):
        if options is not None:
            _deprecated(flag, "set the metric's arguments in test_evaluator")
            merged.update(options)
    if "efficient_test" in merged:
        del merged["efficient_test"]
        notice("efficient_test has no effect: vistra always evaluates batch by batch")
    return merged


def _resolve_out_items(args: argparse.Namespace) -> None:
    if not args.out_items:
        return
    if args.out is None:
        raise UsageError("--out-items needs --out FILE (.pkl/.json/.yaml)")
    if args.out_item is not None:
        raise UsageError("--out-items and --out-item both given; keep --out-item")
    if "none" in args.out_items:  # as in 0.x, 'none' wins: the file holds the metrics only
        args.out_item = "metrics"
        _deprecated("--out-items none", "use --out-item metrics")
    else:
        args.out_item = "pred"
        _deprecated(
            "--out-items",
            "use --out-item pred; the file holds 1.x per-sample records "
            "(pred_score, pred_label, gt_label, ...)",
        )


# ----------------------------------------------------------------------------- GPU choice
def _resolve_gpu(args: argparse.Namespace) -> None:
    """--gpu-id / --gpu-ids / --gpus -> ``args.gpu_id`` (one GPU, one process), checked."""
    given = {
        flag: value
        for flag, value in (
            ("--gpu-id", args.gpu_id),
            ("--gpu-ids", getattr(args, "gpu_ids", None)),
            ("--gpus", getattr(args, "gpus", None)),
        )
        if value is not None
    }
    if not given:
        return
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} both given; keep one (--gpu-id N)")
    flag, value = next(iter(given.items()))
    gpu_id = value if flag == "--gpu-id" else value[0] if flag == "--gpu-ids" else 0
    if flag == "--gpus" and value < 1:
        raise UsageError(f"--gpus {value}: expected a positive number of GPUs")
    typed = " ".join(map(str, [flag, *(value if isinstance(value, list) else [value])]))
    device = gpu_device(gpu_id, args.launcher, visible_cuda_devices(), typed)
    args.gpu_id = gpu_id
    several = (flag == "--gpus" and value > 1) or (flag == "--gpu-ids" and len(value) > 1)
    hint = "; for several GPUs use tools/dist_train.sh CONFIG GPUS" if several else ""
    _deprecated(flag, f"this single process runs on {device} (1.x: CUDA_VISIBLE_DEVICES){hint}")


def gpu_device(gpu_id: int, launcher: str, cuda_count: int, given: str | None = None) -> str:
    """``'cuda:N'`` for a single-process run on GPU ``gpu_id``, or a UsageError saying why
    not: a launched job gives every process the GPU of its LOCAL_RANK instead. ``given``:
    the flag as typed (``'--gpus 2'``), for the messages."""
    given = given or f"--gpu-id {gpu_id}"
    flag = given.split()[0]
    if launcher != "none":
        raise UsageError(
            f"{flag} only applies to a single process (--launcher none); with --launcher "
            f"{launcher} each process uses the GPU of its LOCAL_RANK: drop {flag}"
        )
    if cuda_count == 0:
        raise UsageError(f"{given}: no CUDA device is visible; drop {flag} to run on the CPU")
    if not 0 <= gpu_id < cuda_count:
        raise UsageError(
            f"{given}: {cuda_count} CUDA device(s) visible, so GPU 0..{cuda_count - 1}"
        )
    return f"cuda:{gpu_id}"


def visible_cuda_devices() -> int:
    """How many CUDA devices this process may use (0 with CUDA_VISIBLE_DEVICES=-1)."""
    import torch

    from vistra.dist.launch import cuda_usable

    return torch.cuda.device_count() if cuda_usable() else 0


def single_gpu_dist(args: argparse.Namespace) -> DistInfo | None:
    """The DistInfo of a --gpu-id run (``None``: let the runner pick from --launcher)."""
    if args.gpu_id is None:
        return None
    from vistra.dist.launch import init_dist

    return init_dist("none", gpu_id=args.gpu_id)


# ----------------------------------------------------------------------------- after loading
def apply_train_flags(cfg: Config, args: argparse.Namespace) -> None:
    """Config keys of the 0.x train flags that have no 1.x flag."""
    if args.diff_seed:
        cfg.randomness = {**(cfg.get("randomness") or {}), "diff_rank_seed": True}


def latest_checkpoint(work_dir: str) -> str | None:
    """For 0.x ``--auto-resume --load-from``: resume when the work dir has a checkpoint."""
    from vistra.checkpoint import find_latest_checkpoint

    latest = find_latest_checkpoint(work_dir)
    return None if latest is None else str(latest)


def apply_test_flags(cfg: Config, args: argparse.Namespace) -> None:
    """Test evaluator and visualizer keys of the 0.x test flags."""
    if args.eval:
        set_eval_metrics(cfg, args.eval, getattr(args, "eval_flag", "--eval"))
    if getattr(args, "metric_args", None):  # set by resolve_test_flags
        set_metric_options(cfg, args.metric_args)
    if args.format_only:
        _update_iou_metrics(cfg, {"format_only": True}, "--format-only")
    if args.opacity is not None:
        vis = cfg.get("visualizer") or dict(
            type="SegLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")]
        )
        cfg.visualizer = {**vis, "alpha": args.opacity}


def config_task(cfg: Config) -> str:
    """'segmentation' or 'classification' from the test metrics, else from the model."""
    from vistra.config.legacy.detect import guess_task

    kinds = {_kind(m) for m in _metric_list(cfg.get("test_evaluator"))}
    if "IoUMetric" in kinds:
        return "segmentation"
    if kinds & {"Accuracy", "SingleLabelMetric"}:
        return "classification"
    return guess_task(cfg)


def set_eval_metrics(cfg: Config, names: list[str], flag: str = "--eval") -> None:
    """--eval/--metrics: the test evaluator computes these, keeping the config's other
    arguments of the same metric class (``ignore_index``, ``topk``, ``prefix``, ...)."""
    task = config_task(cfg)
    valid = {"segmentation": SEG_METRICS, "classification": CLS_METRICS}.get(task, ())
    for name in names:
        if name not in valid:
            choices = ", ".join(valid) or "none (this config has no test metric to choose)"
            raise UsageError(
                f"{flag} {name}: not a metric of this {task} config ({cfg.filename})."
                f"{did_you_mean(name, valid)} Valid: {choices}"
            )
    old: dict[str, dict] = {}
    for metric in _metric_list(cfg.get("test_evaluator")):
        old.setdefault(_kind(metric), dict(metric))
    if task == "segmentation":
        cfg.test_evaluator = {**old.get("IoUMetric", {"type": "IoUMetric"}), "iou_metrics": names}
        return
    new = [old.get("Accuracy", {"type": "Accuracy"})] if "accuracy" in names else []
    items = [CLS_ITEMS[n] for n in names if n in CLS_ITEMS]
    if items:
        new.append({**old.get("SingleLabelMetric", {"type": "SingleLabelMetric"}), "items": items})
    cfg.test_evaluator = new[0] if len(new) == 1 else new


def set_metric_options(cfg: Config, options: dict[str, Any]) -> None:
    """--eval-options/--metric-options: arguments of the test metrics."""
    if config_task(cfg) == "segmentation":
        _set_seg_options(cfg, options)
    else:
        _set_cls_options(cfg, options)


def _set_seg_options(cfg: Config, options: dict[str, Any]) -> None:
    valid = SEG_OPTION_KEYS + IOU_ARGS
    _check_keys(options, valid, "segmentation")
    args = {("output_dir" if k == "imgfile_prefix" else k): v for k, v in options.items()}
    _update_iou_metrics(cfg, args, "--eval-options")


def _set_cls_options(cfg: Config, options: dict[str, Any]) -> None:
    _check_keys(options, CLS_OPTION_KEYS, "classification")
    acc: dict[str, Any] = {}
    single: dict[str, Any] = {}
    if "topk" in options:
        topk = options["topk"]
        topk = (topk,) if isinstance(topk, int) else tuple(topk)
        if not topk or not all(isinstance(k, int) and k >= 1 for k in topk):
            raise UsageError(f"--metric-options topk={options['topk']}: expected e.g. topk=(1,5)")
        acc["topk"] = topk
    if "thrs" in options:  # 0.x applied the thresholds to every metric
        acc["thrs"] = single["thrs"] = options["thrs"]
    if "average_mode" in options:
        mode = str(options["average_mode"])
        if mode not in AVERAGE_MODES:
            raise UsageError(
                f"--metric-options average_mode={mode}: expected one of {', '.join(AVERAGE_MODES)}"
            )
        single["average"] = AVERAGE_MODES[mode]
    for kind, args in (("Accuracy", acc), ("SingleLabelMetric", single)):
        if args and not _update_metrics(cfg, kind, args):
            notice(
                f"--metric-options {', '.join(args)}: no effect, no {kind} among the test metrics"
            )


def _check_keys(options: Mapping[str, Any], valid: tuple[str, ...], task: str) -> None:
    for key in options:
        if key not in valid:
            raise UsageError(
                f"--eval-options/--metric-options {key}: not an option of {task} metrics."
                f"{did_you_mean(key, valid)} Valid: {', '.join(valid)}"
            )


# ----------------------------------------------------------------------------- evaluator edits
def _kind(metric: Any) -> str:
    return str(metric.get("type", "")).split(".")[-1] if isinstance(metric, Mapping) else ""


def _metric_list(evaluator: Any) -> list:
    """The metric dicts of a test_evaluator: one dict, a list, or an Evaluator's ``metrics``."""
    if evaluator is None:
        return []
    if isinstance(evaluator, Mapping):
        return _metric_list(evaluator["metrics"]) if "metrics" in evaluator else [evaluator]
    return list(evaluator)


def _update_iou_metrics(cfg: Config, args: dict[str, Any], flag: str) -> None:
    if not _update_metrics(cfg, "IoUMetric", args):
        raise UsageError(
            f"{flag} is for segmentation and needs an IoUMetric test_evaluator; "
            f"{cfg.filename} has test_evaluator={cfg.get('test_evaluator')!r}"
        )


def _update_metrics(cfg: Config, kind: str, args: dict[str, Any]) -> int:
    """Merge ``args`` into every test metric of class ``kind``; how many there were."""
    count = 0

    def edit(metric: Any) -> Any:
        nonlocal count
        if _kind(metric) != kind:
            return metric
        count += 1
        return {**metric, **args}

    cfg.test_evaluator = _map_metrics(cfg.get("test_evaluator"), edit)
    return count


def _map_metrics(evaluator: Any, fn: Any) -> Any:
    """``evaluator`` in the same shape, each metric dict replaced by ``fn(metric)``."""
    if evaluator is None:
        return None
    if isinstance(evaluator, Mapping) and "metrics" in evaluator:
        return {**evaluator, "metrics": _map_metrics(evaluator["metrics"], fn)}
    if isinstance(evaluator, Mapping):
        return fn(evaluator)
    return [fn(m) for m in evaluator]
