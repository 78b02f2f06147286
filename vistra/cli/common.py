"""Argument pieces and error reporting shared by the train and test front-ends."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# the error boundary of the commands lives in errors.py; re-exported for the front-ends
from vistra.cli.errors import ArgumentParser, run_reporting_errors  # noqa: F401
from vistra.config import CfgOptionsAction, Config, ConfigError
from vistra.config.legacy import legacy_markers, split_cfg_options, upgrade_config


class UsageError(ValueError):
    """A flag combination or value that cannot work; reported as one line."""


def add_cfg_options(parser: argparse.ArgumentParser, example: str = "") -> None:
    """``--cfg-options KEY=VALUE ...``, MMEngine's grammar (every command that reads a config)."""
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=CfgOptionsAction,
        default=None,
        metavar="KEY=VALUE",
        help=f"override config keys, e.g. {example}" if example else "override config keys",
    )


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work-dir",
        "--work_dir",
        dest="work_dir",
        help="where logs and checkpoints go (default ./work_dirs/<config name>)",
    )
    add_cfg_options(parser, "model.backbone.depth=101; repeatable")
    parser.add_argument(
        "--launcher",
        choices=["none", "pytorch", "slurm", "mpi"],
        default="none",
        help="how the processes were started",
    )
    parser.add_argument(
        "--local-rank",
        "--local_rank",
        dest="local_rank",
        type=int,
        default=0,
        help="set by old launchers; LOCAL_RANK is used when set",
    )
    parser.add_argument("--no-pin-memory", action="store_true", help="do not pin dataloader memory")


def load_config(
    path: str,
    work_dir: str | None,
    launcher: str,
    local_rank: int = 0,
    cfg_options: dict | None = None,
) -> tuple[Config, dict]:
    """The config at ``path``, in the 1.x schema, and the ``--cfg-options`` still to merge.

    A 0.x config (``vistra.config.legacy``) takes the options that address its own or 0.x
    keys (``data.samples_per_gpu=4``, ``lr_config.min_lr=0``) before it is translated; the
    rest (1.x keys) are returned, to be merged after the flags as for any config.
    """
    if not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    cfg = Config.fromfile(path)
    remaining = dict(cfg_options or {})
    if legacy_markers(cfg):
        before, remaining = split_cfg_options(cfg, remaining)
        if before:
            cfg.merge_from_dict(before)
        cfg = upgrade_config(cfg)
        notice(cfg.legacy_notes[0])
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(path).stem)
    if "LOCAL_RANK" not in os.environ:  # old launchers pass --local-rank instead
        os.environ["LOCAL_RANK"] = str(local_rank)
    return cfg, remaining


def notice(message: str) -> None:
    """One line on stderr, from the first process only (every rank parses the same flags)."""
    rank = next(
        (
            os.environ[k]
            for k in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK")
            if k in os.environ
        ),
        "0",
    )
    if rank == "0":
        print(f"notice: {message}", file=sys.stderr, flush=True)


def set_dataloader_defaults(
    cfg: Config, no_pin_memory: bool, no_persistent_workers: bool = False
) -> None:
    """MMPretrain's tools set pin_memory and persistent_workers on every dataloader."""
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if cfg.get(key) is None:
            continue
        loader = {"pin_memory": True, "persistent_workers": True, **cfg[key]}
        if no_pin_memory:
            loader["pin_memory"] = False
        if no_persistent_workers:
            loader["persistent_workers"] = False
        cfg[key] = loader
