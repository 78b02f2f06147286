"""``vistra list-models [PATTERN] [--index PATH] [--package P] [--check] [--json]``: the
model-zoo configs vistra ships or can load, with their published metric and checkpoint URL,
read from the upstream wheels' metafiles (see vistra/model_index.py for where it looks).

Each line: the model's name, its first published metric, the config to pass to ``vistra
train``/``test`` (vistra's own copy when it ships one of that name -- marked ``*`` -- else
the wheel's file, which vistra reads unchanged) and the checkpoint URL (``-`` when the
metafile gives none). ``--check`` also builds each listed model (on the meta device: no
memory, no weights) and says whether vistra can, and if not why. torch is imported only
for ``--check``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vistra.cli.errors import ArgumentParser, run_reporting_errors
from vistra.model_index import (
    PACKAGES,
    ModelEntry,
    ModelIndexError,
    find_sources,
    matches,
    read_models,
)

PROG = "vistra list-models"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="List the model-zoo configs vistra ships or can load, with checkpoint URLs.",
    )
    parser.add_argument(
        "pattern",
        nargs="?",
        help="case-insensitive substring of the name, config or collection, or a glob "
        "(e.g. 'repvgg', 'resnet50*', '*_ade20k-*')",
    )
    parser.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="PATH",
        help="where an upstream model index is: a model-index.yml, a .mim or package folder, "
        "a folder of installed packages, or a .whl file (repeatable; read before the defaults)",
    )
    parser.add_argument(
        "--package", choices=PACKAGES, help="only the models of this package's index"
    )
    parser.add_argument(
        "--check", action="store_true", help="also build each listed model (meta device) and report"
    )
    parser.add_argument("--json", action="store_true", help="one JSON list instead of lines")
    return parser


def collect(args: argparse.Namespace) -> list[ModelEntry]:
    sources = find_sources(args.index)
    if args.package:
        sources = [s for s in sources if s.package == args.package]
    if not sources:
        raise ModelIndexError(
            "no upstream model index found"
            + (f" for --package {args.package}" if args.package else "")
            + ": pass --index with an mmpretrain/mmseg/mmselfsup wheel (pip download "
            "mmpretrain==1.2.0 --no-deps) or its installed folder, or set VISTRA_CONFIG_ROOTS "
            "to a folder of installed packages"
        )
    return [e for s in sources for e in read_models(s) if matches(e, args.pattern)]


def check_build(entry: ModelEntry) -> str:
    """'yes', or why vistra cannot build the entry's model."""
    if not entry.config_path or not os.path.isfile(entry.config_path):
        return "no config file on disk"
    import warnings

    import torch

    from vistra.config import Config
    from vistra.registry import MODELS, default_scope

    try:
        cfg = Config.fromfile(entry.config_path)
        model_cfg = cfg["model"]
        if cfg.get("data_preprocessor") is not None:
            model_cfg.setdefault("data_preprocessor", cfg["data_preprocessor"])
        with (
            warnings.catch_warnings(),
            default_scope(cfg.get("default_scope")),
            torch.device("meta"),
        ):
            warnings.simplefilter("ignore")
            MODELS.build(model_cfg, key_path="model")
    except Exception as exc:  # noqa: BLE001 - reported per model
        return (
            f"no: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            if str(exc)
            else f"no: {type(exc).__name__}"
        )
    return "yes"


def _line(entry: ModelEntry, builds: str | None) -> str:
    mark = "*" if entry.shipped else " "
    parts = [f"{entry.name}", entry.headline() or "-", f"{mark}{entry.config_path or entry.config}",
             entry.weights or "-"]  # fmt: skip
    if builds is not None:
        parts.append(f"builds: {builds}")
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    out: list[str] = []

    def run() -> None:
        entries = collect(args)
        builds = [check_build(e) if args.check else None for e in entries]
        if args.json:
            rows = [
                {"name": e.name, "package": e.package, "collection": e.collection,
                 "config": e.config_path or e.config, "shipped": e.shipped, "weights": e.weights,
                 "results": e.results, **({"builds": b} if b is not None else {})}
                for e, b in zip(entries, builds)
            ]  # fmt: skip
            out.append(json.dumps(rows, indent=1) + "\n")
            return
        out.extend(_line(e, b) + "\n" for e, b in zip(entries, builds))
        shipped = sum(e.shipped for e in entries)
        summary = f"{len(entries)} model(s)"
        if args.pattern:
            summary += f" matching {args.pattern!r}"
        summary += f"; * = vistra ships the config ({shipped})"
        if args.check:
            summary += f"; vistra builds {sum(b == 'yes' for b in builds)}/{len(entries)}"
        print(summary, file=sys.stderr)

    code = run_reporting_errors(run)
    if code:
        return code
    try:
        sys.stdout.write("".join(out))
        sys.stdout.flush()
    except BrokenPipeError:  # `vistra list-models | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
