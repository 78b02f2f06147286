"""``HRFuseScales``: MMPretrain's classification neck for HRNet (`Deep High-Resolution
Representation Learning <https://arxiv.org/abs/1908.07919>`_, the "HRNetV2-W for
classification" head): the four branch maps are widened, then merged from the finest to
the coarsest by strided convs, and projected to ``out_channels``.

Keys: ``increase_layers.{i}.0`` (one ResNet Bottleneck per branch, widths 128, 256, 512,
1024: ``conv1``..``conv3``, ``bn1``..``bn3``, ``downsample.{0,1}``),
``downsample_layers.{i}.{conv,bn}`` (3x3 stride-2 ConvModules, 128->256->512->1024) and
``final_layer.{conv,bn}`` (1x1 ConvModule to ``out_channels``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.backbones.resnet import Bottleneck, ResLayer
from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.registry import MODELS

# The bottleneck mid widths of the four branches (the paper's 32, 64, 128, 256; outputs
# x4): fixed, whatever the HRNet width, so every HRNet-W* ends in the same 2048-d vector.
_MID_CHANNELS = (32, 64, 128, 256)


@MODELS.register_module()
class HRFuseScales(BaseModule):
    """Fuse the four HRNet branch maps into one ``out_channels`` map at the coarsest
    resolution; takes the backbone's tuple and returns a one-map tuple.

    Args:
        in_channels: widths of the four branches, finest first (e.g. ``(18, 36, 72, 144)``).
        out_channels: width of the fused map.
        norm_cfg: norm of every conv.
        init_cfg: MMPretrain's default (normal Linear init; the neck has no Linear).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 2048,
        norm_cfg: dict = dict(type="BN", momentum=0.1),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = dict(type="Normal", layer="Linear", std=0.01),  # noqa: B006
    ) -> None:
        super().__init__(init_cfg)
        if (
            not isinstance(in_channels, Sequence)
            or len(in_channels) != len(_MID_CHANNELS)
            or not all(isinstance(c, int) and c > 0 for c in in_channels)
        ):
            raise ValueError(
                f"HRFuseScales in_channels must be {len(_MID_CHANNELS)} positive ints, the "
                f"widths of HRNet's four branches, got {in_channels!r}"
            )
        self.in_channels, self.out_channels = tuple(in_channels), out_channels
        widths = [mid * Bottleneck.expansion for mid in _MID_CHANNELS]
        self.increase_layers = nn.ModuleList(
            ResLayer(Bottleneck, 1, cin, cout, norm_cfg=norm_cfg)
            for cin, cout in zip(in_channels, widths)
        )
        self.downsample_layers = nn.ModuleList(
            ConvModule(cin, cout, 3, stride=2, padding=1, norm_cfg=norm_cfg, bias=False)
            for cin, cout in zip(widths[:-1], widths[1:])
        )
        self.final_layer = ConvModule(widths[-1], out_channels, 1, norm_cfg=norm_cfg, bias=False)

    def forward(self, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        if not isinstance(x, (tuple, list)) or len(x) != len(self.increase_layers):
            raise ValueError(
                f"HRFuseScales takes the {len(self.increase_layers)} HRNet branch maps, got "
                f"{type(x).__name__} of {len(x) if isinstance(x, (tuple, list)) else 1}"
            )
        feat = self.increase_layers[0](x[0])
        for i, downsample in enumerate(self.downsample_layers, start=1):
            # the running sum moves one resolution down and takes in the next branch
            feat = downsample(feat) + self.increase_layers[i](x[i])
        return (self.final_layer(feat),)
