"""``vistra train CONFIG``: the flags of MMPretrain/MMSegmentation's tools/train.py."""

from __future__ import annotations

import argparse

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


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="vistra train", description="Train a model from a config.")
    p.add_argument("config", help="config file (.py/.json/.yaml)")
    add_common_arguments(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="PATH|auto",
        help="resume from PATH, or from the latest checkpoint in the work dir",
    )
    p.add_argument(
        "--load-from",
        dest="load_from",
        metavar="CKPT",
        help="initialise weights from CKPT (not a resume)",
    )
    p.add_argument(
        "--amp", action="store_true", help="mixed precision: fp16/bf16 on GPU, bf16 on CPU"
    )
    p.add_argument("--no-validate", action="store_true", help="skip validation during training")
    p.add_argument(
        "--auto-scale-lr",
        action="store_true",
        help="scale the lr by the real batch size / auto_scale_lr.base_batch_size",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (randomness.seed)")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms (warn where none exists)",
    )
    p.add_argument(
        "--no-persistent-workers",
        action="store_true",
        help="do not keep dataloader workers between epochs",
    )
    legacy_flags.add_train_arguments(p)
    return p


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Map flags onto config keys the way the OpenMMLab tools do; --cfg-options last."""
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        if cfg.get("optim_wrapper") is None:
            raise UsageError("--amp needs an optim_wrapper in the config")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    _set_resume(cfg, args)
    if args.auto_scale_lr:
        if cfg.get("auto_scale_lr") is None:
            raise UsageError(
                "--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) in the config"
            )
        cfg.auto_scale_lr.enable = True
    if args.seed is not None or args.deterministic:
        randomness = dict(cfg.get("randomness") or {})
        if args.seed is not None:
            randomness["seed"] = args.seed
        if args.deterministic:
            randomness["deterministic"] = True
        cfg.randomness = randomness
    legacy_flags.apply_train_flags(cfg, args)
    set_dataloader_defaults(cfg, args.no_pin_memory, args.no_persistent_workers)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def _set_resume(cfg: Config, args: argparse.Namespace) -> None:
    """``resume``/``load_from`` from --resume [PATH] and --load-from (after the 0.x flags
    were resolved: --resume-from PATH is --resume PATH, --auto-resume is --resume)."""
    if args.load_from and args.resume is not None:
        if not (args.auto_resume and args.resume == "auto"):
            raise UsageError(
                "--load-from and --resume both given; --resume PATH already loads PATH"
            )
        # 0.x --auto-resume --load-from: resume when the work dir has a checkpoint, else
        # start from the --load-from weights
        args.resume = legacy_flags.latest_checkpoint(cfg.work_dir)
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    elif args.load_from:
        cfg.load_from = args.load_from


def config_from_args(args: argparse.Namespace) -> Config:
    """The config ``vistra train`` runs for these arguments (``vistra check`` checks it)."""
    legacy_flags.resolve_train_flags(args)
    cfg, args.cfg_options = load_config(
        args.config, args.work_dir, args.launcher, args.local_rank, args.cfg_options
    )
    return merge_args(cfg, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        from vistra.engine.runner import Runner

        cfg = config_from_args(args)
        runner = Runner.from_config(cfg, legacy_flags.single_gpu_dist(args))
        runner.train()

    return run_reporting_errors(run)


if __name__ == "__main__":
    raise SystemExit(main())
