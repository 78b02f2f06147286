"""``SETRMLAHead``: the multi-level aggregation decoder of `SETR
<https://arxiv.org/abs/2012.15840>`_ (after ``MLANeck``), MMSegmentation 1.x.

Keys: ``up_convs.{i}.0.conv`` / ``up_convs.{i}.1.conv`` (two 3x3 ConvModules per input,
+ ``.bn`` etc.; ``up_convs.{i}.2`` is a parameter-free bilinear upsampler), ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import Upsample
from vistra.registry import MODELS


@MODELS.register_module()
class SETRMLAHead(BaseDecodeHead):
    """Every input: two 3x3 convs to ``mla_channels`` and ``up_scale`` x bilinear
    upsampling; the results are concatenated (``channels`` must be
    ``len(in_channels) * mla_channels``) and classified. Inputs are ``multiple_select``."""

    def __init__(self, mla_channels: int = 128, up_scale: int = 4, **kwargs) -> None:
        super().__init__(input_transform="multiple_select", **kwargs)
        self.mla_channels = mla_channels
        num_inputs = len(self.in_channels)
        if self.channels != num_inputs * mla_channels:
            raise ValueError(
                f"SETRMLAHead channels ({self.channels}) must be len(in_channels) * "
                f"mla_channels = {num_inputs} * {mla_channels}"
            )
        common = dict(padding=1, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.up_convs = nn.ModuleList(
            nn.Sequential(
                ConvModule(self.in_channels[i], mla_channels, 3, **common),
                ConvModule(mla_channels, mla_channels, 3, **common),
                Upsample(scale_factor=up_scale, mode="bilinear", align_corners=self.align_corners),
            )
            for i in range(num_inputs)
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        feats = self._transform_inputs(inputs)
        out = torch.cat([up_conv(x) for x, up_conv in zip(feats, self.up_convs)], dim=1)
        return self.cls_seg(out)
