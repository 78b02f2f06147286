"""Fuse a re-parameterisable classifier's training-time branches into its deploy form.

    python tools/model_converters/reparameterize_model.py CONFIG CHECKPOINT TARGET

MMPretrain's tool of the same name and arguments: builds CONFIG's model, loads CHECKPOINT
into it strictly (every weight set, no key left over), calls the backbone's
``switch_to_deploy()`` (RepVGG, MobileOne, RepMLPNet, RepLKNet, RIFormer: conv + BN
fusion, identity and small-kernel branches folded into one conv, ...) and saves TARGET
atomically as ``{'meta', 'state_dict'}``. TARGET loads strictly into the model of the
family's deploy config (``*_deploy_*``, ``deploy=True`` / ``small_kernel_merged=True``)
and gives the same outputs as CHECKPOINT in the training-time model. The training state
(optimizer, schedulers) is dropped: it belongs to the branches that no longer exist.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vistra.cli.common import ArgumentParser, UsageError, run_reporting_errors
from vistra.config import Config, ConfigError

if TYPE_CHECKING:
    from torch import nn

SUFFIXES = (".pth", ".tar")  # MMPretrain's tool accepts these target names only


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the config of the training-time (not deploy) model")
    parser.add_argument("checkpoint", help="a checkpoint of that model")
    parser.add_argument("target", help="where to write the deploy checkpoint (.pth)")
    return parser.parse_args(argv)


def check_paths(config: str, checkpoint: str, target: str) -> Path:
    """The target path, once CONFIG, CHECKPOINT and TARGET make sense; else one-line errors."""
    if not Path(config).is_file():
        raise ConfigError(f"config file not found: {config}")
    if "://" not in checkpoint and not Path(checkpoint).expanduser().is_file():
        raise UsageError(f"checkpoint file not found: {checkpoint}")
    out = Path(target).expanduser()
    if out.suffix not in SUFFIXES:
        raise UsageError(
            f"TARGET {target} must name a checkpoint file ending in {' or '.join(SUFFIXES)}"
        )
    if out.is_dir():
        raise UsageError(f"TARGET {target} is a directory; give a file name ending in .pth")
    if out.exists() and "://" not in checkpoint and out.resolve() == Path(checkpoint).resolve():
        raise UsageError(
            f"TARGET {target} is CHECKPOINT itself; write the deploy weights to another file "
            "(the training checkpoint is the only copy of the unfused branches)"
        )
    if out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"TARGET {target}: {out.parent} is not a directory")
    return out


def build_model(cfg: Config) -> nn.Module:
    """CONFIG's model as ``vistra train``/``test`` build it (the config's scope in force)."""
    from vistra.registry import MODELS, default_scope

    model_cfg = cfg.get("model")
    if not isinstance(model_cfg, dict):
        raise ConfigError(f"{cfg.filename}: no model dict to convert")
    if cfg.get("data_preprocessor") is not None:
        model_cfg.setdefault("data_preprocessor", cfg["data_preprocessor"])
    with default_scope(cfg.get("default_scope")):
        return MODELS.build(model_cfg, key_path="model")


def load_strictly(model: nn.Module, checkpoint: str) -> dict:
    """Load CHECKPOINT's weights into ``model``, refusing any key missing, left over or of
    another shape; returns the checkpoint dict."""
    from vistra.checkpoint import (
        DDP_PREFIX,
        CheckpointError,
        extract_state_dict,
        load_checkpoint_file,
        load_state_dict,
    )

    ckpt = load_checkpoint_file(checkpoint)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{checkpoint} holds no checkpoint dict")
    report = load_state_dict(model, extract_state_dict(ckpt), source=checkpoint, revise=DDP_PREFIX)
    if report.unset or report.unexpected:
        problems = []
        if report.missing:
            problems.append(f"missing {len(report.missing)} (e.g. {report.missing[0]})")
        if report.mismatched:
            key, theirs, ours = report.mismatched[0]
            problems.append(f"shape-mismatched {len(report.mismatched)} (e.g. {key} "
                            f"{tuple(theirs)} vs the model's {tuple(ours)})")  # fmt: skip
        if report.unexpected:
            problems.append(f"unexpected {len(report.unexpected)} (e.g. {report.unexpected[0]})")
        hint = ""
        if any(_is_fused(k) for k in report.unexpected):
            hint = "; it looks converted already (CONFIG must be the training-time config)"
        elif any(_is_fused(k) for k in report.missing):
            hint = "; CONFIG builds the deploy model: give the training-time config"
        raise CheckpointError(
            f"{checkpoint} does not fit the model of the config strictly: "
            f"{'; '.join(problems)} keys{hint}"
        )
    return ckpt


def _is_plain(value: object) -> bool:
    if isinstance(value, str | int | float | bool | type(None)):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _is_fused(key: str) -> bool:
    """A key only deploy models have (``branch_reparam``, ``lkb_reparam``, ``norm_reparam``,
    RepMLP's biased ``fc3``)."""
    return "reparam" in key or key.endswith("fc3.bias")


def convert(config: str, checkpoint: str, target: str) -> Path:
    """Convert CHECKPOINT of CONFIG's model into the deploy checkpoint TARGET."""
    import torch

    from vistra.checkpoint import save_checkpoint

    out = check_paths(config, checkpoint, target)
    cfg = Config.fromfile(config)
    model = build_model(cfg)
    backbone = getattr(model, "backbone", None)
    # the backbone and, where it has one (LeViT's head fuses its BN into the linear), the head
    parts = [
        part
        for part in (backbone, getattr(model, "head", None))
        if part is not None and callable(getattr(part, "switch_to_deploy", None))
    ]
    if not parts:
        owner = type(backbone).__name__ if backbone is not None else type(model).__name__
        raise UsageError(
            f"{owner} (the model of {config}) has no switch_to_deploy(); only "
            "re-parameterisable models (RepVGG, MobileOne, RepMLPNet, RepLKNet, RIFormer, "
            "LeViT) can be converted"
        )
    ckpt = load_strictly(model, checkpoint)
    model.eval()
    with torch.no_grad():
        for part in parts:
            part.switch_to_deploy()
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    # the source's plain entries (MMEngine's may hold objects a safe load only stands in for)
    meta = {k: v for k, v in meta.items() if _is_plain(v)}
    meta.update(reparameterized_from=str(checkpoint), reparameterized_with=str(config))
    save_checkpoint({"meta": meta, "state_dict": model.state_dict()}, out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run() -> None:
        out = convert(args.config, args.checkpoint, args.target)
        print(f"deploy checkpoint saved to {out}")

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
