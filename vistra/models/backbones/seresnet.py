"""SEResNet backbone (`Squeeze-and-Excitation Networks <https://arxiv.org/abs/1709.01507>`__),
with MMPretrain's arguments and checkpoint keys.

A ResNet whose every bottleneck rescales its residual branch channel-wise before the
shortcut is added: global average pool, 1x1 conv squeezing to
``make_divisible(out_channels // se_ratio, 8)`` channels, ReLU, 1x1 conv back, sigmoid
(MMPretrain's :class:`~vistra.models.layers.se_layer_mmpretrain.SELayer`).

Arch table (``depth``): 50 (3, 4, 6, 3), 101 (3, 4, 23, 3), 152 (3, 8, 36, 3) bottlenecks.

Keys: ResNet's, plus ``layer{i}.{j}.se_layer.conv1.conv`` and ``.conv2.conv`` (weight and
bias) in every block.
"""

from __future__ import annotations

import torch

from vistra.models.backbones.resnet import Bottleneck, ResLayer, ResNet
from vistra.models.backbones.resnext import check_depth
from vistra.models.layers.se_layer_mmpretrain import SELayer
from vistra.registry import MODELS


class SEBottleneck(Bottleneck):
    """ResNet's bottleneck with an SE layer on the output of ``bn3``."""

    def __init__(self, in_channels: int, out_channels: int, se_ratio: int = 16, **kwargs) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        self.se_layer = SELayer(out_channels, ratio=se_ratio)

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.se_layer(self.norm3(self.conv3(out)))
        return self._finish(out, x)


def check_se_ratio(family: str, se_ratio: int) -> None:
    if not isinstance(se_ratio, int) or isinstance(se_ratio, bool) or se_ratio < 1:
        raise ValueError(f"{family} se_ratio must be a positive int, got {se_ratio!r}")


@MODELS.register_module()
class SEResNet(ResNet):
    """SEResNet backbone (`paper <https://arxiv.org/abs/1709.01507>`__).

    ``se_ratio`` is the SE layers' squeeze ratio; every other argument is ResNet's.
    """

    arch_settings = {
        50: (SEBottleneck, (3, 4, 6, 3)),
        101: (SEBottleneck, (3, 4, 23, 3)),
        152: (SEBottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, depth: int, se_ratio: int = 16, **kwargs) -> None:
        check_depth(type(self).__name__, depth, self.arch_settings)
        check_se_ratio(type(self).__name__, se_ratio)
        # read by make_res_layer during the base constructor
        self.se_ratio = se_ratio
        super().__init__(depth=depth, **kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        return ResLayer(se_ratio=self.se_ratio, **kwargs)
