"""Configs written for the 0.x tools (MMCV runner era: MMSegmentation 0.x, MMClassification
0.x, MMSelfSup 0.x), translated once, at load time, into the 1.x keys the engine uses.

``upgrade_config(cfg)`` returns the translated Config (or ``cfg`` itself for a 1.x config);
its ``legacy_notes`` list what was translated. A 1.x config that still holds a few 0.x keys
(:func:`~vistra.config.legacy.detect.is_1x_config`) is not translated: its values stay as
they are (the 0.x keys too, as MMEngine keeps them) and its one note names the 0.x keys
that are ignored. The steps of a translation, in order:

- ``model.relocate_model_cfgs``: a top-level 0.x ``train_cfg``/``test_cfg`` belongs to the model;
- ``schedule.translate``: ``runner``/``total_*``, ``optimizer``, ``optimizer_config``, ``fp16``,
  ``lr_config``, ``momentum_config`` -> ``train_cfg``, ``optim_wrapper``, ``param_scheduler``;
- ``data.translate``: ``data`` and 0.x pipelines -> ``*_dataloader`` and the data preprocessor;
- ``model.translate``: the model's 1.x arguments and ``data_preprocessor``;
- ``runtime.translate``: ``evaluation``, ``checkpoint_config``, ``log_config``, ``dist_params``,
  ``cudnn_benchmark``, ``workflow``, ``resume_from``... -> loops, evaluators, hooks, env_cfg.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vistra.config.config import Config
from vistra.config.legacy.context import LegacyContext
from vistra.config.legacy.detect import (
    LEGACY_KEYS,
    check_conflicts,
    guess_task,
    is_1x_config,
    is_iter_based,
    legacy_markers,
    stale_legacy_keys,
)

__all__ = [
    "LEGACY_KEYS",
    "LegacyContext",
    "is_1x_config",
    "legacy_markers",
    "stale_legacy_keys",
    "split_cfg_options",
    "translate",
    "upgrade_config",
]


def translate(old: Mapping[str, Any], source: str) -> LegacyContext:
    """Translate a 0.x config (plain dicts) into 1.x keys; ``ctx.new`` holds the result."""
    # imported here: every `vistra train` asks legacy_markers() whether its config is 0.x,
    # and only a 0.x config needs the translation tables (~6 ms of imports otherwise)
    from vistra.config.legacy import data, model, runtime, schedule

    check_conflicts(old, source)
    ctx = LegacyContext(
        source=source, old=dict(old), task=guess_task(old), iter_based=is_iter_based(old)
    )
    model.relocate_model_cfgs(ctx)
    schedule.translate(ctx)
    data.translate(ctx)
    model.translate(ctx)
    runtime.translate(ctx)
    return ctx


def upgrade_config(cfg: Config) -> Config:
    """``cfg`` translated to the 1.x schema when it is a 0.x config, else ``cfg`` unchanged
    (a 1.x config with stale 0.x keys comes back as a copy whose note names them)."""
    markers = legacy_markers(cfg)
    if not markers:
        return cfg
    source = cfg.filename or "<config>"
    if is_1x_config(cfg):
        summary = (
            f"{source} is a 1.x config that also holds 0.x keys ({', '.join(markers)}); "
            "they are ignored, as the 1.x OpenMMLab tools ignore them (the 1.x keys beside "
            "them are used)"
        )
        return Config(
            cfg.to_dict(),
            cfg_text=cfg.text,
            filename=cfg.filename,
            env_variables=cfg.env_variables,
            legacy_notes=(summary,),
        )
    ctx = translate(cfg.to_dict(), source)
    summary = (
        f"{source} is a 0.x (MMCV runner) config ({', '.join(markers)}); translated to the "
        f"1.x schema at load time ({len(ctx.notes)} changes; `vistra migrate-config` writes "
        "them out)"
    )
    return Config(
        ctx.new,
        cfg_text=cfg.text,
        filename=cfg.filename,
        env_variables=cfg.env_variables,
        legacy_notes=(summary, *ctx.notes),
    )


def split_cfg_options(
    cfg: Mapping[str, Any], options: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--cfg-options`` for a 0.x config, split into those that address the config as
    written (its own keys or 0.x keys: merged before the translation) and the rest (1.x keys:
    merged after it, like every option of a 1.x config)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for key, value in (options or {}).items():
        top = key.split(".", 1)[0]
        (before if top in cfg or top in LEGACY_KEYS else after)[key] = value
    return before, after
