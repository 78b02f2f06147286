"""``JPU`` neck (Joint Pyramid Upsampling, `FastFCN <https://arxiv.org/abs/1903.11816>`_),
MMSegmentation 1.x.

Keys: ``conv_layers.{i}.0.conv``/``.bn`` (a 3x3 ConvModule per used input level),
``dilation_layers.{j}.0.depthwise_conv``/``.pointwise_conv`` (one dilated depthwise-separable
conv per entry of ``dilations``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, DepthwiseSeparableConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


@MODELS.register_module()
class JPU(BaseModule):
    """Levels ``start_level`` to ``end_level`` (exclusive; -1 means all) are each reduced to
    ``mid_channels`` by a 3x3 conv, resized to the first one and concatenated; parallel
    dilated depthwise-separable convs (``dilations``) on that stack are concatenated into the
    output ``len(dilations) * mid_channels`` map.

    Outputs: the untouched inputs ``start_level .. end_level - 2``, then the JPU map.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (512, 1024, 2048),
        mid_channels: int = 512,
        start_level: int = 0,
        end_level: int = -1,
        dilations: Sequence[int] = (1, 2, 4, 8),
        align_corners: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(in_channels, (list, tuple)) or not in_channels:
            raise TypeError(f"JPU in_channels must be a list/tuple of ints, got {in_channels!r}")
        if not isinstance(dilations, (list, tuple)) or not dilations:
            raise TypeError(f"JPU dilations must be a list/tuple of ints, got {dilations!r}")
        self.in_channels, self.mid_channels = tuple(in_channels), mid_channels
        self.num_ins, self.start_level = len(in_channels), start_level
        if end_level == -1:
            self.backbone_end_level = self.num_ins
        elif end_level > self.num_ins:
            raise ValueError(
                f"JPU end_level={end_level} exceeds the number of inputs ({self.num_ins})"
            )
        else:
            self.backbone_end_level = end_level
        self.dilations, self.align_corners = tuple(dilations), align_corners
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        levels = range(start_level, self.backbone_end_level)
        self.conv_layers = nn.ModuleList(
            nn.Sequential(ConvModule(self.in_channels[i], mid_channels, 3, padding=1, **common))
            for i in levels
        )
        # No activation after the depthwise part, as upstream.
        self.dilation_layers = nn.ModuleList(
            nn.Sequential(
                DepthwiseSeparableConvModule(
                    len(levels) * mid_channels,
                    mid_channels,
                    3,
                    stride=1,
                    padding=d,
                    dilation=d,
                    conv_cfg=conv_cfg,
                    dw_norm_cfg=norm_cfg,
                    dw_act_cfg=None,
                    pw_norm_cfg=norm_cfg,
                    pw_act_cfg=act_cfg,
                )
            )
            for d in self.dilations
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f"JPU got {len(inputs)} inputs but in_channels has {len(self.in_channels)} entries"
            )
        feats = [conv(inputs[self.start_level + i]) for i, conv in enumerate(self.conv_layers)]
        size = feats[0].shape[2:]
        feats = [feats[0]] + [
            resize(f, size=size, mode="bilinear", align_corners=self.align_corners)
            for f in feats[1:]
        ]
        feat = torch.cat(feats, dim=1)
        out = torch.cat([layer(feat) for layer in self.dilation_layers], dim=1)
        return (*inputs[self.start_level : self.backbone_end_level - 1], out)
