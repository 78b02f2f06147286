"""LoRA fine-tuning of any model's linear layers (MMPretrain's ``LoRAModel``), `LoRA:
Low-Rank Adaptation of Large Language Models <https://arxiv.org/abs/2106.09685>`_.

``LoRAModel(module=dict(type='VisionTransformer', ...), alpha, rank, targets=[...])``
builds the wrapped model and replaces each ``nn.Linear`` whose name matches a target
(``re.fullmatch`` of ``type``, or a name ending with it) by a ``LoRALinear``:
``y = W0 x + (alpha / rank) * B A dropout(x)``, ``A`` (``lora_down``) Kaiming-uniform and
``B`` (``lora_up``) zero, so training starts from the wrapped model's outputs. Only the
LoRA matrices train.

Checkpoints, as upstream's: the state dict holds only the LoRA matrices,
``module.<path>.lora_down.weight`` / ``lora_up.weight`` (a classifier's head keeps its own
keys); the frozen weights come from the wrapped model's ``init_cfg`` (its pretrained
checkpoint), and loading reports none of them missing. The wrapped model is initialised
by ``init_weights`` like any other (upstream does it in the constructor); a pretrained
checkpoint of the plain model loads into it, its ``<linear>.weight`` / ``.bias`` going to
``<linear>.original_layer.*``. ``merged()`` gives the plain model with every LoRA update
folded into its linear weights, for inference.

The module lives with the model utilities: it wraps models rather than being a backbone,
neck or head of its own (DESIGN.md's ``models/`` layout).
"""

from __future__ import annotations

import copy
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.registry import MODELS

logger = logging.getLogger(__name__)

LORA_MARK = ".lora_"  # in the key of every LoRA parameter


class LoRALinear(nn.Module):
    """``original_layer(x) + lora_up(lora_down(lora_dropout(x))) * alpha / rank``."""

    def __init__(
        self, original_layer: nn.Linear, alpha: float = 1, rank: int = 0, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        if not isinstance(original_layer, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(original_layer).__name__}")
        if not isinstance(rank, int) or rank <= 0:
            raise ValueError(f"LoRA rank must be a positive integer, got rank={rank!r}")
        self.lora_dropout = nn.Dropout(drop_rate)
        self.lora_down = nn.Linear(original_layer.in_features, rank, bias=False)
        self.lora_up = nn.Linear(rank, original_layer.out_features, bias=False)
        self.scaling = alpha / rank
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.original_layer = original_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.lora_up(self.lora_down(self.lora_dropout(x)))
        return self.original_layer(x) + update * self.scaling

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same as this layer in eval mode."""
        original = self.original_layer
        layer = nn.Linear(
            original.in_features,
            original.out_features,
            bias=original.bias is not None,
            device=original.weight.device,
            dtype=original.weight.dtype,
        )
        with torch.no_grad():
            delta = self.lora_up.weight @ self.lora_down.weight
            layer.weight.copy_(original.weight + delta * self.scaling)
            if original.bias is not None:
                layer.bias.copy_(original.bias)
        return layer

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # a checkpoint of the plain model: its linear's weights are the original layer's
        for name in ("weight", "bias"):
            plain, wrapped = prefix + name, f"{prefix}original_layer.{name}"
            if plain in state_dict and wrapped not in state_dict:
                state_dict[wrapped] = state_dict.pop(plain)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


@MODELS.register_module()
class LoRAModel(BaseModule):
    """``module`` (a config dict, or a built model) with LoRA on its ``targets``.

    ``targets``: dicts with ``type`` (a regular expression matched against the whole
    module name, or a suffix of it) and optionally their own ``alpha``, ``rank`` and
    ``drop_rate``. Attributes the wrapper lacks are the wrapped model's (so a classifier
    still finds e.g. the backbone's ``get_layer_depth``).
    """

    def __init__(
        self,
        module: dict | nn.Module,
        alpha: float = 1,
        rank: int = 0,
        drop_rate: float = 0.0,
        targets: Sequence[dict] = (),
    ) -> None:
        super().__init__()
        if not targets:
            raise ValueError(
                "LoRAModel: targets is empty; give the layers to adapt, e.g. "
                "targets=[dict(type='qkv')]"
            )
        for target in targets:
            if not isinstance(target, dict) or not isinstance(target.get("type"), str):
                raise TypeError(
                    f"LoRAModel: each of targets must be a dict with a 'type' pattern, got "
                    f"{target!r}"
                )
        if not isinstance(module, nn.Module):
            module = MODELS.build(module, key_path="module")
        self.module = module
        self.alpha, self.rank, self.drop_rate = alpha, rank, drop_rate
        self.targets = [dict(t) for t in targets]
        replaced = self._apply_lora()
        if not replaced:
            names = [n for n, m in self.module.named_modules() if isinstance(m, nn.Linear)]
            raise ValueError(
                f"LoRAModel: no linear layer matches targets {[t['type'] for t in targets]}; "
                f"linear layers of the module: {names[:8]}{' ...' if len(names) > 8 else ''}"
            )
        self._set_lora_trainable()
        self._register_state_dict_hook(_keep_lora_keys)
        self.register_load_state_dict_post_hook(_ignore_frozen_keys)

    def _apply_lora(self) -> list[str]:
        replaced = []
        for name in [n for n, _ in self.module.named_modules()]:
            for target in self.targets:
                pattern = target["type"]
                if not (re.fullmatch(pattern, name) or name.endswith(pattern)):
                    continue
                layer = self.module.get_submodule(name)
                if not isinstance(layer, nn.Linear):
                    continue
                alpha = target.get("alpha", self.alpha)
                rank = target.get("rank", self.rank)
                drop_rate = target.get("drop_rate", self.drop_rate)
                logger.info(
                    "Set LoRA for %s with alpha: %s, rank: %s, drop rate: %s",
                    name,
                    alpha,
                    rank,
                    drop_rate,
                )
                parent, _, child = name.rpartition(".")
                owner = self.module.get_submodule(parent) if parent else self.module
                setattr(owner, child, LoRALinear(layer, alpha, rank, drop_rate))
                replaced.append(name)
        return replaced

    def _set_lora_trainable(self) -> None:
        for name, param in self.named_parameters():
            param.requires_grad = LORA_MARK in name

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        self.__dict__["_load_prefix"] = prefix  # for the post-hook, which is not told it
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def merged(self) -> nn.Module:
        """A copy of the wrapped model with every LoRA update folded into its linear
        layer: the same outputs in eval mode, no LoRA cost."""
        model = copy.deepcopy(self.module)
        for name, layer in list(model.named_modules()):
            if isinstance(layer, LoRALinear):
                parent, _, child = name.rpartition(".")
                owner = model.get_submodule(parent) if parent else model
                setattr(owner, child, layer.merged())
        for param in model.parameters():
            param.requires_grad = True
        return model

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            wrapped = self.__dict__.get("_modules", {}).get("module")
            if wrapped is None:
                raise
            return getattr(wrapped, name)


def _keep_lora_keys(module: LoRAModel, state_dict: dict, prefix: str, local_metadata: dict):
    """State-dict hook: of this model's keys, keep only the LoRA matrices."""
    for key in [k for k in state_dict if k.startswith(prefix) and LORA_MARK not in k]:
        del state_dict[key]


def _ignore_frozen_keys(module: LoRAModel, incompatible_keys: Any) -> None:
    """Load post-hook: the frozen weights are not in LoRA checkpoints; do not report this
    model's keys other than the LoRA matrices as missing (nor as unexpected), as upstream."""
    prefix = module.__dict__.get("_load_prefix", "")
    for keys in (incompatible_keys.missing_keys, incompatible_keys.unexpected_keys):
        keys[:] = [k for k in keys if LORA_MARK in k or not k.startswith(prefix)]
