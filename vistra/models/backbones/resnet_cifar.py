"""ResNet for 32x32 CIFAR images (MMPretrain's ``ResNet_CIFAR``).

The stem is one 3x3 stride-1 conv (keys ``conv1``/``bn1``) and there is no max pool, so
small images keep their resolution through the first stage.
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.backbones.resnet import ResNet
from vistra.models.layers import build_conv_layer, build_norm_layer
from vistra.registry import MODELS


@MODELS.register_module()
class ResNet_CIFAR(ResNet):  # noqa: N801 (MMPretrain's registry name)
    """ResNet with a CIFAR stem; every other argument is :class:`ResNet`'s."""

    def __init__(self, depth: int, deep_stem: bool = False, **kwargs) -> None:
        if deep_stem:
            raise ValueError("ResNet_CIFAR does not support deep_stem")
        super().__init__(depth, deep_stem=False, **kwargs)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        self.conv1 = build_conv_layer(
            self.conv_cfg,
            in_channels,
            stem_channels,
            kernel_size=3,
            stride=1,
            padding=1,
            bias=False,
        )
        self.norm1_name, norm1 = build_norm_layer(self.norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self._stem(x)
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
