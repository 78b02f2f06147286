"""A config's model for the analysis tools: built as training would build it, without a run.

No work dir, log or process group: ``get-flops`` and ``benchmark`` only need the network.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from vistra.checkpoint import CheckpointError, extract_state_dict, load_checkpoint_file
from vistra.checkpoint import load_state_dict as load_weights_into
from vistra.registry import MODELS, default_scope


def build_model(cfg: Any, device: str | torch.device | None = None) -> nn.Module:
    """``cfg.model`` (with the top-level ``data_preprocessor``, as MMEngine merges it), in
    eval mode; built directly on ``device`` when given (``'meta'``: no memory at all)."""
    import vistra.models  # noqa: F401  (registers the model types)

    model_cfg = copy.deepcopy(cfg["model"])
    if cfg.get("data_preprocessor") is not None and isinstance(model_cfg, dict):
        model_cfg.setdefault("data_preprocessor", copy.deepcopy(cfg["data_preprocessor"]))
    with default_scope(cfg.get("default_scope")), _default_device(device):
        # the BatchNorms that replace SyncBNs are created on the same device
        return revert_sync_bn(MODELS.build(model_cfg, key_path="model")).eval()


def _default_device(device: str | torch.device | None) -> Any:
    return contextlib.nullcontext() if device is None else torch.device(device)


def revert_sync_bn(model: nn.Module) -> nn.Module:
    """SyncBatchNorm needs a process group; one process measures with plain BatchNorm."""
    from vistra.dist.model_wrap import has_sync_batchnorm, revert_sync_batchnorm

    return revert_sync_batchnorm(model) if has_sync_batchnorm(model) else model


def load_checkpoint(model: nn.Module, checkpoint: str, allow_unsafe: bool = False) -> None:
    """Load ``checkpoint`` into ``model``; refuse one that leaves model weights unset, as
    ``vistra test`` does (a benchmark of half-random weights would mislead nobody about
    speed, but a typo in the path or the config should not pass unnoticed)."""
    state = extract_state_dict(load_checkpoint_file(checkpoint, allow_unsafe=allow_unsafe))
    report = load_weights_into(model, state, source=checkpoint)
    if report.unset:
        raise CheckpointError(
            f"{checkpoint} leaves {len(report.unset)} model weights unset "
            f"({', '.join(report.unset[:3])}...): is it a checkpoint of this config?"
        )
