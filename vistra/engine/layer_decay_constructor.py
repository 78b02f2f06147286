"""MMSegmentation's layer-wise learning-rate decay constructors (ConvNeXt, BEiT, MAE).

``LearningRateDecayOptimizerConstructor`` gives each backbone layer (or stage) its own lr,
``base_lr * decay_rate ** (num_layers + 2 - layer_id - 1)``: the decode head keeps (about)
the base lr and earlier layers get geometrically less. ``paramwise_cfg`` takes:

- ``num_layers``: the backbone depth the ids count to (12 for ViT-B, 6 or 12 for ConvNeXt);
- ``decay_rate``: the factor per layer;
- ``decay_type``: ``'layer_wise'`` (the default; ConvNeXt, BEiT, MAE), ``'layer_wise_vit'``
  (the same rule, what ``LayerDecayOptimizerConstructor`` sets) or ``'stage_wise'``
  (ConvNeXt only).

Groups are named ``layer_{id}_decay`` / ``layer_{id}_no_decay``; a group holds every
parameter with that id and decay kind, with ``lr``, ``lr_scale``, ``weight_decay``,
``group_name`` and ``param_names``. "No decay" (weight decay 0) means a 1-D parameter or a
bias, as upstream. Upstream's test for ``'pos_embed'``/``'cls_token'`` compares the bare
name with full parameter names (``backbone.pos_embed``), so it never fires: the position
embedding (3-D) is decayed and the class token (3-D) too; vistra keeps that.

The backbone is recognised by its class name, as upstream does: ``ConvNeXt`` in the name
selects the ConvNeXt rules, ``BEiT`` or ``MAE`` the ViT rule.

``LayerDecayOptimizerConstructor`` is the older BEiT spelling: ``paramwise_cfg`` has
``layer_decay_rate`` instead of ``decay_rate`` and the decay type is always layer-wise.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

from torch import nn

from vistra.engine.optim_constructor import DefaultOptimWrapperConstructor
from vistra.registry import OPTIM_WRAPPER_CONSTRUCTORS

logger = logging.getLogger("vistra")

DECAY_TYPES = ("layer_wise", "layer_wise_vit", "stage_wise")
_TOKENS = ("backbone.cls_token", "backbone.mask_token", "backbone.pos_embed")
# upstream also lists these bare names as "no decay"; full names never equal them
_BARE_TOKENS = ("pos_embed", "cls_token")


def _index(name: str, position: int) -> int:
    return int(name.split(".")[position])


def get_layer_id_for_convnext(var_name: str, max_layer_id: int) -> int:
    """ConvNeXt, layer-wise: stem and stage 0 are ids 0-1, stage 1 is 2, stage 2 spreads its
    blocks three per id from 3 on, stage 3 is ``max_layer_id``; non-backbone parameters
    are ``max_layer_id + 1``. ``max_layer_id`` is ``paramwise_cfg.num_layers``."""
    if var_name in _TOKENS:
        return 0
    if var_name.startswith("backbone.downsample_layers"):
        stage = _index(var_name, 2)
        return {0: 0, 1: 2, 2: 3}.get(stage, max_layer_id)
    if var_name.startswith("backbone.stages"):
        stage, block = _index(var_name, 2), _index(var_name, 3)
        if stage == 2:
            return 3 + block // 3
        return {0: 1, 1: 2}.get(stage, max_layer_id)
    return max_layer_id + 1


def get_stage_id_for_convnext(var_name: str, max_stage_id: int) -> int:
    """ConvNeXt, stage-wise: tokens and downsampling layers are 0, ``stages.{i}`` is
    ``i + 1``, the rest ``max_stage_id - 1`` (``max_stage_id`` = ``num_layers + 2``)."""
    if var_name in _TOKENS or var_name.startswith("backbone.downsample_layers"):
        return 0
    if var_name.startswith("backbone.stages"):
        return _index(var_name, 2) + 1
    return max_stage_id - 1


def get_layer_id_for_vit(var_name: str, max_layer_id: int) -> int:
    """BEiT / MAE / ViT: tokens and patch embedding are 0, ``layers.{i}`` is ``i + 1``,
    the rest ``max_layer_id - 1`` (``max_layer_id`` = ``num_layers + 2``)."""
    if var_name in _TOKENS or var_name.startswith("backbone.patch_embed"):
        return 0
    if var_name.startswith("backbone.layers"):
        return _index(var_name, 2) + 1
    return max_layer_id - 1


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LearningRateDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """MMSegmentation's layer/stage-wise lr decay for ConvNeXt, BEiT and MAE backbones."""

    paramwise_keys: tuple[str, ...] = ("num_layers", "decay_rate", "decay_type")

    def _validate_cfg(self) -> None:
        super()._validate_cfg()
        cfg, name = self.paramwise_cfg, type(self).__name__
        num_layers = cfg.get("num_layers")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int):
            raise ValueError(
                f"{name} needs optim_wrapper.paramwise_cfg.num_layers (an int: the backbone "
                f"depth), got {num_layers!r}"
            )
        rate = cfg.get("decay_rate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ValueError(
                f"{name} needs optim_wrapper.paramwise_cfg.decay_rate (a number), got {rate!r}"
            )
        decay_type = cfg.get("decay_type", "layer_wise")
        if decay_type not in DECAY_TYPES:
            raise ValueError(
                f"optim_wrapper.paramwise_cfg.decay_type={decay_type!r}: valid: "
                f"{', '.join(DECAY_TYPES)}"
            )
        if self.base_lr is None:
            raise ValueError(f"{name} needs optim_wrapper.optimizer.lr to decay")

    def _layer_id(self, backbone: str, name: str) -> int:
        """The id of parameter ``name`` under the configured decay type."""
        cfg = self.paramwise_cfg
        num_layers = cfg["num_layers"]
        decay_type = cfg.get("decay_type", "layer_wise")
        if decay_type == "stage_wise":
            if "ConvNeXt" in backbone:
                return get_stage_id_for_convnext(name, num_layers + 2)
            supported = "ConvNeXt"
        else:  # 'layer_wise' and 'layer_wise_vit'
            if "ConvNeXt" in backbone:
                return get_layer_id_for_convnext(name, num_layers)
            if "BEiT" in backbone or "MAE" in backbone:
                return get_layer_id_for_vit(name, num_layers + 2)
            supported = "ConvNeXt, BEiT and MAE"
        raise NotImplementedError(
            f"{type(self).__name__} (decay_type={decay_type!r}) supports {supported} "
            f"backbones, not {backbone}"
        )

    def add_params(self, params: list[dict], module: nn.Module, **kwargs: Any) -> None:  # type: ignore[override]
        """Append one group per (layer id, decay / no decay) to ``params`` (in place)."""
        backbone = getattr(module, "backbone", None)
        if not isinstance(backbone, nn.Module):
            raise ValueError(
                f"{type(self).__name__} decays by backbone layer; {type(module).__name__} "
                "has no `backbone`"
            )
        backbone_name = type(backbone).__name__
        num_layers = self.paramwise_cfg["num_layers"] + 2
        rate = self.paramwise_cfg["decay_rate"]
        groups: dict[str, dict[str, Any]] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen parameters stay out of the optimizer, as upstream
            no_decay = param.ndim == 1 or name.endswith(".bias") or name in _BARE_TOKENS
            layer_id = self._layer_id(backbone_name, name)
            group_name = f"layer_{layer_id}_{'no_decay' if no_decay else 'decay'}"
            group = groups.get(group_name)
            if group is None:
                scale = rate ** (num_layers - layer_id - 1)
                group = groups[group_name] = {
                    "weight_decay": 0.0 if no_decay else self.base_wd,
                    "params": [],
                    "param_names": [],
                    "lr_scale": scale,
                    "group_name": group_name,
                    "lr": scale * self.base_lr,
                }
                if group["weight_decay"] is None:  # no base value: the optimizer's default
                    del group["weight_decay"]
            group["params"].append(param)
            group["param_names"].append(name)
        for group_name, group in groups.items():
            logger.debug(
                "%s: lr=%.4g lr_scale=%.4g weight_decay=%s params=%s",
                group_name, group["lr"], group["lr_scale"], group.get("weight_decay"),
                group["param_names"],
            )  # fmt: skip
        params.extend(groups.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimizerConstructor(LearningRateDecayOptimizerConstructor):
    """BEiT's older spelling: ``paramwise_cfg=dict(num_layers=, layer_decay_rate=)``, always
    layer-wise (``decay_type='layer_wise_vit'``). Deprecated upstream in favour of
    ``LearningRateDecayOptimizerConstructor``."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        if not isinstance(paramwise_cfg, Mapping) or "layer_decay_rate" not in paramwise_cfg:
            raise KeyError(
                "LayerDecayOptimizerConstructor needs optim_wrapper.paramwise_cfg.layer_decay_rate"
                f" (and num_layers); got {paramwise_cfg!r}"
            )
        warnings.warn(
            "LayerDecayOptimizerConstructor is deprecated (as in MMSegmentation): use "
            "LearningRateDecayOptimizerConstructor with paramwise_cfg.decay_rate and "
            "decay_type='layer_wise_vit'",
            DeprecationWarning,
            stacklevel=2,
        )
        cfg = dict(paramwise_cfg)
        cfg["decay_type"] = "layer_wise_vit"
        cfg["decay_rate"] = cfg.pop("layer_decay_rate")
        super().__init__(optim_wrapper_cfg, cfg)


__all__ = [
    "LayerDecayOptimizerConstructor",
    "LearningRateDecayOptimizerConstructor",
    "get_layer_id_for_convnext",
    "get_layer_id_for_vit",
    "get_stage_id_for_convnext",
]
