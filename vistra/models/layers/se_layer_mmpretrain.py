"""MMPretrain's ``SELayer`` (`Squeeze-and-Excitation <https://arxiv.org/abs/1709.01507>`_).

MMPretrain's variant differs from MMSegmentation's (:mod:`vistra.models.layers.se_layer`):
the squeezed width may be given (``squeeze_channels``) or rounded with its own ``divisor``,
the excitation defaults to a plain sigmoid, and ``return_weight=True`` returns the
per-channel weights instead of the rescaled input (RepMLP's global perceptron).

Keys: ``conv1.conv`` and ``conv2.conv`` (1x1 convs, with bias unless ``bias=False``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.make_divisible import make_divisible

_DEFAULT_ACTS = (dict(type="ReLU"), dict(type="Sigmoid"))


class SELayer(nn.Module):
    """Global average pool, squeeze to ``squeeze_channels`` (default
    ``make_divisible(channels // ratio, divisor)``), excite back to ``channels``; returns
    ``x * weight`` (or the weight itself with ``return_weight=True``).

    ``act_cfg`` is one dict (used for both convs) or a pair (squeeze, excite).
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int | None = None,
        ratio: int = 16,
        divisor: int = 8,
        bias: bool | str = "auto",
        conv_cfg: dict | None = None,
        act_cfg: dict | Sequence[dict] = _DEFAULT_ACTS,
        return_weight: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(act_cfg, dict):
            act_cfg = (act_cfg, act_cfg)
        if len(act_cfg) != 2 or not all(isinstance(a, dict) for a in act_cfg):
            raise ValueError(f"SELayer act_cfg must be a dict or a pair of dicts, got {act_cfg!r}")
        if squeeze_channels is None:
            squeeze_channels = make_divisible(channels // ratio, divisor)
        if not isinstance(squeeze_channels, int) or squeeze_channels <= 0:
            raise ValueError(
                f"SELayer squeeze_channels must be a positive int, got {squeeze_channels!r}"
            )
        self.return_weight = return_weight
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(
            channels, squeeze_channels, 1, bias=bias, conv_cfg=conv_cfg, act_cfg=act_cfg[0]
        )
        self.conv2 = ConvModule(
            squeeze_channels, channels, 1, bias=bias, conv_cfg=conv_cfg, act_cfg=act_cfg[1]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv2(self.conv1(self.global_avgpool(x)))
        return weight if self.return_weight else x * weight
