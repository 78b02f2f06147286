"""MMSegmentation's ``SELayer`` (`Squeeze-and-Excitation <https://arxiv.org/abs/1709.01507>`_).

Keys: ``conv1.conv`` and ``conv2.conv`` (1x1 convs with bias, no norm); the pooling has no
parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.make_divisible import make_divisible

_DEFAULT_ACTS = (dict(type="ReLU"), dict(type="HSigmoid", bias=3.0, divisor=6.0))


class SELayer(nn.Module):
    """Global average pool, squeeze to ``make_divisible(channels // ratio, 8)`` channels,
    excite back to ``channels``, and scale the input by the result.

    ``act_cfg`` is one dict (used for both convs) or a pair (squeeze, excite).
    """

    def __init__(
        self,
        channels: int,
        ratio: int = 16,
        conv_cfg: dict | None = None,
        act_cfg: dict | Sequence[dict] = _DEFAULT_ACTS,
    ) -> None:
        super().__init__()
        if isinstance(act_cfg, dict):
            act_cfg = (act_cfg, act_cfg)
        if len(act_cfg) != 2 or not all(isinstance(a, dict) for a in act_cfg):
            raise ValueError(f"SELayer act_cfg must be a dict or a pair of dicts, got {act_cfg!r}")
        squeezed = make_divisible(channels // ratio, 8)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(channels, squeezed, 1, conv_cfg=conv_cfg, act_cfg=act_cfg[0])
        self.conv2 = ConvModule(squeezed, channels, 1, conv_cfg=conv_cfg, act_cfg=act_cfg[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv2(self.conv1(self.global_avgpool(x)))
