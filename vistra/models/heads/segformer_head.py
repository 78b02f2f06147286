"""``SegformerHead``, the all-MLP decoder of `SegFormer <https://arxiv.org/abs/2105.15203>`_,
MMSegmentation 1.x.

Keys: ``convs.{i}.conv``/``.bn`` (one 1x1 ConvModule per input level), ``fusion_conv``
(1x1 over the concatenated levels), ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


@MODELS.register_module()
class SegformerHead(BaseDecodeHead):
    """Every level is projected to ``channels`` by a 1x1 ConvModule and resized to the
    first (finest) level with ``interpolate_mode``; the concatenation is fused by a 1x1
    ConvModule (ReLU, whatever ``act_cfg`` says: upstream builds it with the default) and
    classified. Always ``input_transform='multiple_select'``."""

    def __init__(self, interpolate_mode: str = "bilinear", **kwargs) -> None:
        super().__init__(input_transform="multiple_select", **kwargs)
        self.interpolate_mode = interpolate_mode
        num_inputs = len(self.in_channels)
        self.convs = nn.ModuleList(
            ConvModule(
                self.in_channels[i],
                self.channels,
                1,
                norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg,
            )
            for i in range(num_inputs)
        )
        self.fusion_conv = ConvModule(
            self.channels * num_inputs, self.channels, 1, norm_cfg=self.norm_cfg
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        feats = self._transform_inputs(inputs)
        size = feats[0].shape[2:]
        outs = [
            resize(conv(x), size, mode=self.interpolate_mode, align_corners=self.align_corners)
            for conv, x in zip(self.convs, feats)
        ]
        return self.cls_seg(self.fusion_conv(torch.cat(outs, dim=1)))
