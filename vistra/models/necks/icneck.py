"""``ICNeck`` (`ICNet <https://arxiv.org/abs/1704.08545>`_), MMSegmentation 1.x: cascade
feature fusion of ICNet's three branches.

Keys: ``cff_24`` (sub4 into sub2) and ``cff_12`` (that into sub1), each ``conv_low``
(3x3, dilation 2) and ``conv_high`` (1x1) ConvModules.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


class CascadeFeatureFusion(BaseModule):
    """Upsample the low-resolution map to the high-resolution one (bilinear), a dilated
    3x3 conv on it and a 1x1 conv on the other, sum and ReLU. Returns the fused map and
    the upsampled, convolved low-resolution map (for the auxiliary heads)."""

    def __init__(
        self,
        low_channels: int,
        high_channels: int,
        out_channels: int,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        align_corners: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.align_corners = align_corners
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_low = ConvModule(low_channels, out_channels, 3, padding=2, dilation=2, **common)
        self.conv_high = ConvModule(high_channels, out_channels, 1, **common)

    def forward(
        self, x_low: torch.Tensor, x_high: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_low = resize(
            x_low, size=x_high.shape[2:], mode="bilinear", align_corners=self.align_corners
        )
        x_low = self.conv_low(x_low)
        return F.relu(x_low + self.conv_high(x_high)), x_low


@MODELS.register_module()
class ICNeck(BaseModule):
    """``in_channels``: ICNet's (sub1, sub2, sub4) widths. Outputs ``(x_24, x_12,
    x_cff_12)``: the two cascade stages' upsampled low-resolution maps and the final fused
    map (``out_channels`` each)."""

    def __init__(
        self,
        in_channels: Sequence[int] = (64, 256, 256),
        out_channels: int = 128,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        align_corners: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if len(in_channels) != 3:
            raise ValueError(f"in_channels must have 3 entries, got {tuple(in_channels)!r}")
        self.in_channels, self.out_channels = tuple(in_channels), out_channels
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.align_corners = align_corners
        common = dict(
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, align_corners=align_corners
        )
        self.cff_24 = CascadeFeatureFusion(in_channels[2], in_channels[1], out_channels, **common)
        self.cff_12 = CascadeFeatureFusion(out_channels, in_channels[0], out_channels, **common)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != 3:
            raise ValueError(f"ICNeck takes 3 feature maps (sub1, sub2, sub4), got {len(inputs)}")
        x_sub1, x_sub2, x_sub4 = inputs
        x_cff_24, x_24 = self.cff_24(x_sub4, x_sub2)
        x_cff_12, x_12 = self.cff_12(x_cff_24, x_sub1)
        return x_24, x_12, x_cff_12
