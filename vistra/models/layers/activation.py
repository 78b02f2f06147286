"""Activation layers by MMCV's config names (``dict(type='ReLU', inplace=True)``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistra.registry import MODELS


class Swish(nn.Module):
    """``x * sigmoid(x)``; MMCV's name for SiLU, kept so that configs saying 'Swish' build."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class HSigmoid(nn.Module):
    """Hard sigmoid ``clamp((x + bias) / divisor, min_value, max_value)``, MMCV 2.x defaults."""

    def __init__(
        self,
        bias: float = 3.0,
        divisor: float = 6.0,
        min_value: float = 0.0,
        max_value: float = 1.0,
    ) -> None:
        super().__init__()
        if divisor == 0:
            raise ValueError("HSigmoid divisor must not be 0")
        self.bias, self.divisor = bias, divisor
        self.min_value, self.max_value = min_value, max_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + self.bias) / self.divisor).clamp(self.min_value, self.max_value)


class Clamp(nn.Module):
    """Clamp values into ``[min, max]`` (MMCV's ``Clamp``)."""

    def __init__(self, min: float = -1.0, max: float = 1.0) -> None:  # noqa: A002 (MMCV names)
        super().__init__()
        self.min, self.max = min, max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=self.min, max=self.max)


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "ReLU": nn.ReLU,
    "LeakyReLU": nn.LeakyReLU,
    "PReLU": nn.PReLU,
    "RReLU": nn.RReLU,
    "ReLU6": nn.ReLU6,
    "ELU": nn.ELU,
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
    "GELU": nn.GELU,
    "SiLU": nn.SiLU,
    "Swish": Swish,
    "HSwish": nn.Hardswish,
    "HSigmoid": HSigmoid,
    "Clamp": Clamp,
}
for _name, _cls in _ACTIVATIONS.items():
    MODELS.register_module(name=_name, module=_cls)

ACTIVATION_NAMES = tuple(_ACTIVATIONS)


def build_activation_layer(cfg: dict) -> nn.Module:
    """Build an activation from ``cfg`` (``type`` plus the layer's own arguments)."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise TypeError(f"act_cfg must be a dict with a 'type' key, got {cfg!r}")
    return MODELS.build(cfg, key_path="act_cfg")
