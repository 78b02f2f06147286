"""Is a config written for the 0.x (MMCV runner) tools, and does it mix the two schemas?

A config that holds 0.x keys is one of two things:

- a **1.x config with stale 0.x keys** (MMPretrain's HorNet configs keep a 0.x
  ``data = dict(samples_per_gpu=128)``; MMSegmentation's CGNet configs a ``total_iters``):
  it sets ``default_scope`` (a key that only MMEngine-era configs have) or holds a complete
  1.x triple (``train_dataloader`` + ``train_cfg`` + ``optim_wrapper``, or the ``val_``/
  ``test_`` dataloader + cfg + evaluator). MMEngine loads it and the 1.x tools run its 1.x
  keys; the 0.x keys are inert. vistra does the same and says once which keys it ignores;
- otherwise a **0.x config**, translated to 1.x (:mod:`vistra.config.legacy`); a 0.x key
  beside its 1.x twin there is an error (:func:`check_conflicts`), since it is unclear
  which of the two the author meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vistra.config.errors import ConfigError

# Top-level keys that only 0.x configs have.
LEGACY_KEYS = (
    "data",
    "runner",
    "optimizer_config",
    "lr_config",
    "momentum_config",
    "checkpoint_config",
    "log_config",
    "evaluation",
    "workflow",
    "dist_params",
    "resume_from",
    "auto_resume",
    "fp16",
    "cudnn_benchmark",
    "total_iters",
    "total_epochs",
    "gpu_ids",
)

# (0.x key, 1.x key) pairs that say the same thing: a config may hold one or the other.
CONFLICTS = (
    ("lr_config", "param_scheduler"),
    ("momentum_config", "param_scheduler"),
    ("runner", "train_cfg"),
    ("total_iters", "train_cfg"),
    ("total_epochs", "train_cfg"),
    ("optimizer_config", "optim_wrapper"),
    ("fp16", "optim_wrapper"),
    ("data", "train_dataloader"),
    ("data", "val_dataloader"),
    ("data", "test_dataloader"),
    ("evaluation", "val_evaluator"),
    ("evaluation", "test_evaluator"),
    ("checkpoint_config", "default_hooks.checkpoint"),
    ("log_config", "default_hooks.logger"),
    ("dist_params", "env_cfg.dist_cfg"),
    ("cudnn_benchmark", "env_cfg.cudnn_benchmark"),
    ("resume_from", "resume"),
    ("auto_resume", "resume"),
)

LOOP_KEYS = ("max_iters", "max_epochs", "val_interval", "val_begin", "by_epoch")

# The 1.x keys that together run one stage; a config holding all of one triple is 1.x.
TRIPLES = (
    ("train_dataloader", "train_cfg", "optim_wrapper"),
    ("val_dataloader", "val_cfg", "val_evaluator"),
    ("test_dataloader", "test_cfg", "test_evaluator"),
)


def is_loop_cfg(value: Any) -> bool:
    """A 1.x ``train_cfg``/``test_cfg`` (a loop) rather than a 0.x model's train/test cfg."""
    if not isinstance(value, Mapping):
        return False
    if str(value.get("type", "")).endswith("Loop"):
        return True
    return any(key in value for key in LOOP_KEYS)


def legacy_markers(cfg: Mapping[str, Any]) -> list[str]:
    """The 0.x keys of ``cfg``: those of a 0.x config, or the stale keys of a 1.x config
    (:func:`is_1x_config` tells which); empty when there are none."""
    markers = [key for key in LEGACY_KEYS if key in cfg and _is_set(key, cfg[key])]
    if "optimizer" in cfg and "optim_wrapper" not in cfg:
        markers.append("optimizer")
    return markers


def is_1x_config(cfg: Mapping[str, Any]) -> bool:
    """Whether ``cfg`` is written for the 1.x tools, whatever 0.x keys it also holds: it sets
    ``default_scope`` or holds one complete 1.x triple (see the module docstring)."""
    if cfg.get("default_scope") is not None:
        return True
    for loader, loop, last in TRIPLES:
        if all(cfg.get(key) is not None for key in (loader, loop, last)):
            if loop != "train_cfg" or is_loop_cfg(cfg[loop]):
                return True
    return False


def stale_legacy_keys(cfg: Mapping[str, Any]) -> list[str]:
    """The 0.x keys of a 1.x config, which the 1.x tools ignore (empty for a 0.x config)."""
    markers = legacy_markers(cfg)
    return markers if markers and is_1x_config(cfg) else []


def _is_set(key: str, value: Any) -> bool:
    if key == "data":  # 1.x configs may use `data` as a plain variable
        return isinstance(value, Mapping) and any(
            k in value for k in ("train", "val", "test", "samples_per_gpu", "workers_per_gpu")
        )
    if key in ("resume_from", "auto_resume", "gpu_ids", "fp16"):
        return bool(value)  # 0.x default_runtime files set resume_from = None
    return True


def check_conflicts(cfg: Mapping[str, Any], source: str) -> None:
    """A ConfigError naming both keys when a 0.x key and its 1.x twin are both set."""
    for old, new in CONFLICTS:
        if old not in cfg or not _is_set(old, cfg[old]):
            continue
        value = _lookup(cfg, new)
        if value is None or value is False:
            continue
        if new == "train_cfg" and not is_loop_cfg(value):
            continue  # a 0.x model train_cfg at the top level, not a training loop
        raise ConfigError(
            f"{source}: both '{old}' (0.x) and '{new}' (1.x) are set and say the same thing; "
            f"keep one of them (`vistra migrate-config` rewrites a whole 0.x config as 1.x)"
        )


def _lookup(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def guess_task(cfg: Mapping[str, Any]) -> str:
    """'segmentation', 'classification' or 'selfsup', from the model and datasets."""
    model = cfg.get("model") or {}
    kind = str(model.get("type", "")).split(".")[-1]
    if kind in ("EncoderDecoder", "CascadeEncoderDecoder"):
        return "segmentation"
    if kind == "ImageClassifier":
        return "classification"
    data = cfg.get("data") or {}
    train = data.get("train") or {} if isinstance(data, Mapping) else {}
    if isinstance(train, Mapping) and ("data_source" in train or "img_dir" in train):
        return "selfsup" if "data_source" in train else "segmentation"
    if kind:
        return "selfsup"  # MAE, SimCLR, MoCo, BYOL, ...: MMSelfSup algorithms
    return "classification"


def is_iter_based(cfg: Mapping[str, Any]) -> bool:
    """The 0.x runner counts iterations (IterBasedRunner or a top-level ``total_iters``)."""
    runner = cfg.get("runner")
    if isinstance(runner, Mapping):
        kind = str(runner.get("type", ""))
        if kind:
            return kind.endswith("IterBasedRunner")
        return "max_iters" in runner
    return "total_iters" in cfg
