"""``vistra check CONFIG [train flags]``: the pre-flight validation of ``vistra train``, alone.

Takes the flags of ``vistra train`` (they change the config the same way) and reports every
problem pre-flight finds, one ``error:`` line each, exactly as ``vistra train`` would
before it starts; nothing is written. ``--data`` also loads every sample once (finds
unreadable images and labels outside the classes); ``--mode test`` checks what ``vistra
test`` reads, ``--mode all`` every section.
"""

from __future__ import annotations

import argparse

from vistra.cli.common import run_reporting_errors
from vistra.cli.train import build_parser as build_train_parser
from vistra.cli.train import config_from_args


def build_parser() -> argparse.ArgumentParser:
    p = build_train_parser()
    p.prog = "vistra check"
    p.description = "Check a config (and the flags of vistra train) before training."
    p.add_argument(
        "--data", action="store_true", help="also load every sample once (slow on big datasets)"
    )
    p.add_argument(
        "--mode",
        choices=["train", "test", "all"],
        default="train",
        help="the sections to check: what vistra train reads (default), vistra test, or all",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        from vistra.engine.preflight import preflight

        preflight(config_from_args(args), args.mode, read_data=args.data)
        what = "and every sample " if args.data else ""
        print(f"ok: {args.config} ({args.mode} sections {what}checked)")

    return run_reporting_errors(run)


if __name__ == "__main__":
    raise SystemExit(main())
