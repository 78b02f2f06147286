"""``vistra migrate-config OLD.py NEW.py``: write a 0.x config out in the 1.x schema.

The translation is the one ``vistra train`` applies at load time
(``vistra.config.legacy``); this command makes it a file the user can read, edit and keep.
The ``_base_`` chain is flattened. torch is never imported.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

from vistra.cli.errors import ArgumentParser, run_reporting_errors
from vistra.config import CfgOptionsAction, Config, ConfigError
from vistra.config.legacy import legacy_markers, upgrade_config
from vistra.config.pretty import format_config

PROG = "vistra migrate-config"

# 1.x configs read top to bottom in this order; helper variables (crop_size, norm_cfg,
# train_pipeline...) come first, as in OpenMMLab's own 1.x files.
KEY_ORDER = (
    "default_scope",
    "model",
    "train_dataloader",
    "val_dataloader",
    "test_dataloader",
    "val_evaluator",
    "test_evaluator",
    "train_cfg",
    "val_cfg",
    "test_cfg",
    "optim_wrapper",
    "param_scheduler",
    "auto_scale_lr",
    "default_hooks",
    "custom_hooks",
    "env_cfg",
    "vis_backends",
    "visualizer",
    "log_processor",
    "log_level",
    "load_from",
    "resume",
    "randomness",
    "tta_model",
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Translate a 0.x (MMCV runner) config into a 1.x config file.",
    )
    parser.add_argument("old", help="the 0.x config (.py/.json/.yaml), with its _base_ files")
    parser.add_argument("new", help="the 1.x .py file to write")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=CfgOptionsAction,
        metavar="KEY=VALUE",
        help="override keys of the 0.x config before translating it",
    )
    parser.add_argument("--force", action="store_true", help="overwrite NEW if it exists")
    return parser


def migrate(old: str, new: str, cfg_options: dict | None = None, force: bool = False) -> Config:
    """Translate ``old`` and write ``new``; returns the translated config."""
    if not Path(old).is_file():
        raise ConfigError(f"config file not found: {old}")
    if Path(new).suffix != ".py":
        raise ConfigError(f"{new}: migrate-config writes a Python config; name it *.py")
    if Path(new).exists() and not force:
        raise ConfigError(f"{new} exists; pass --force to overwrite it")
    cfg = Config.fromfile(old)
    if not legacy_markers(cfg):
        raise ConfigError(
            f"{old} is already a 1.x config (none of data, runner, optimizer_config, "
            "lr_config, evaluation, ... is set): nothing to migrate"
        )
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    translated = upgrade_config(cfg)
    text = render(translated, old)
    Config.fromstring(text, ".py")  # what is written must load back
    tmp = f"{new}.tmp{os.getpid()}"
    Path(tmp).write_text(text, encoding="utf-8")
    os.replace(tmp, new)
    return translated


def render(cfg: Config, source: str) -> str:
    """The translated config as Python, after a header naming its source and the changes."""
    from vistra import __version__

    today = datetime.date.today().isoformat()
    summary, *changes = cfg.legacy_notes
    header = [
        f"# Migrated by `vistra migrate-config` (vistra {__version__}, {today}) from",
        f"#   {source}",
        "# a 0.x (MMCV runner) config, into the 1.x schema; its _base_ chain is flattened here.",
        "# Changes:",
        *(f"#   - {line}" for line in changes),
        "",
    ]
    body = cfg.to_dict()
    known = [k for k in KEY_ORDER if k in body]
    ordered = {k: v for k, v in body.items() if k not in KEY_ORDER}
    ordered.update((k, body[k]) for k in known)
    return "\n".join(header) + "\n" + format_config(ordered)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    done: list[Config] = []
    code = run_reporting_errors(
        lambda: done.append(migrate(args.old, args.new, args.cfg_options, args.force))
    )
    if code:
        return code
    cfg = done[0]
    print(f"wrote {args.new} ({len(cfg.legacy_notes) - 1} changes from {args.old})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
