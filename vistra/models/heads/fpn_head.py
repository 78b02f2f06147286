"""``FPNHead`` (`Panoptic FPN <https://arxiv.org/abs/1901.02446>`_ semantic branch),
MMSegmentation 1.x.

Keys: ``scale_heads.{i}.{j}.conv``/``.bn`` -- ConvModules at even ``j``, parameter-free
2x upsamplers between them for levels coarser than the first -- and ``conv_seg``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import Upsample, resize
from vistra.registry import MODELS


@MODELS.register_module()
class FPNHead(BaseDecodeHead):
    """Each pyramid level is brought to the finest stride by ``log2(stride / stride_0)``
    conv + 2x-upsample steps (one conv at least); the levels are summed, then classified.
    ``feature_strides`` has one stride per input, the first being the smallest."""

    def __init__(self, feature_strides: Sequence[int], **kwargs) -> None:
        super().__init__(input_transform="multiple_select", **kwargs)
        if len(feature_strides) != len(self.in_channels):
            raise ValueError(
                f"FPNHead needs one feature stride per input: feature_strides "
                f"{list(feature_strides)}, in_channels {list(self.in_channels)}"
            )
        if min(feature_strides) != feature_strides[0]:
            raise ValueError(
                f"FPNHead feature_strides must start with the smallest, got {list(feature_strides)}"
            )
        self.feature_strides = tuple(feature_strides)
        self.scale_heads = nn.ModuleList()
        for i, stride in enumerate(feature_strides):
            length = max(1, int(math.log2(stride) - math.log2(feature_strides[0])))
            layers: list[nn.Module] = []
            for k in range(length):
                layers.append(
                    ConvModule(
                        self.in_channels[i] if k == 0 else self.channels,
                        self.channels,
                        3,
                        padding=1,
                        conv_cfg=self.conv_cfg,
                        norm_cfg=self.norm_cfg,
                        act_cfg=self.act_cfg,
                    )
                )
                if stride != feature_strides[0]:
                    layers.append(
                        Upsample(scale_factor=2, mode="bilinear", align_corners=self.align_corners)
                    )
            self.scale_heads.append(nn.Sequential(*layers))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        output = self.scale_heads[0](x[0])
        for i in range(1, len(self.feature_strides)):
            output = output + resize(
                self.scale_heads[i](x[i]), output.shape[2:], mode="bilinear",
                align_corners=self.align_corners,
            )  # fmt: skip
        return self.cls_seg(output)
