"""``vistra print-config CONFIG [--cfg-options ...] [--json]``: show the merged config.

Prints the config after ``_base_`` inheritance, placeholders and ``--cfg-options`` as
Python (reloadable) or as JSON (tuples become lists). A 0.x config is printed as its 1.x
translation, the config the engine runs; a 1.x config that still holds stale 0.x keys is
printed as loaded, after one notice naming the keys the engine ignores. A bad config is one ``error:``
line on stderr and exit code 2. torch is never imported.
"""

from __future__ import annotations

import argparse
import os
import sys

from vistra.cli.common import add_cfg_options
from vistra.cli.errors import ArgumentParser, run_reporting_errors
from vistra.config import Config
from vistra.config.formats import dump_json
from vistra.config.legacy import legacy_markers, split_cfg_options, upgrade_config

PROG = "vistra print-config"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vistra print-config``."""
    parser = ArgumentParser(
        prog=PROG,
        description="Print a config after _base_ inheritance, placeholders and --cfg-options.",
    )
    parser.add_argument("config", help="config file (.py, .json, .yaml or .yml)")
    add_cfg_options(
        parser,
        'model.backbone.depth=101 train_dataloader.batch_size=8 "model.data_preprocessor.mean=[0,0,0]"',
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of Python (tuples become lists)"
    )
    return parser


def load(path: str, cfg_options: dict | None = None) -> tuple[Config, list[str]]:
    """The config ``print-config`` shows for ``path`` and the notices it prints before it.

    A 0.x config becomes its 1.x translation; a 1.x config with stale 0.x keys stays as
    loaded (keys and all, as MMEngine loads it) with one notice naming the ignored keys.
    """
    cfg = Config.fromfile(path)
    options = dict(cfg_options or {})
    notices: list[str] = []
    if legacy_markers(cfg):  # show what the engine will run: the 1.x translation
        before, options = split_cfg_options(cfg, options)
        cfg.merge_from_dict(before)
        cfg = upgrade_config(cfg)
        notices.append(cfg.legacy_notes[0])
    if options:
        cfg.merge_from_dict(options)
    return cfg, notices


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (2 for a bad config or bad flags)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed its message (or --help)
        return e.code if isinstance(e.code, int) else 2
    shown: list[str] = []

    def run() -> None:
        cfg, notices = load(args.config, args.cfg_options)
        for line in notices:
            print(f"notice: {line}", file=sys.stderr)
        shown.append(dump_json(cfg.to_dict()) if args.json else cfg.pretty_text)

    code = run_reporting_errors(run)
    if code:
        return code
    try:
        sys.stdout.write(shown[0])
        sys.stdout.flush()
    except BrokenPipeError:  # `vistra print-config ... | head`: the reader is gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
