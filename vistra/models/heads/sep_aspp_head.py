"""``DepthwiseSeparableASPPHead`` (`DeepLabV3+ <https://arxiv.org/abs/1802.02611>`_),
MMSegmentation 1.x.

Keys: ``image_pool.1``, ``aspp_modules.0.conv`` (dilation 1 stays a plain 1x1 conv),
``aspp_modules.{i}.depthwise_conv.conv``/``.pointwise_conv.conv`` (and ``.bn``),
``bottleneck``, ``c1_bottleneck``, ``sep_bottleneck.{0,1}.depthwise_conv``/``.pointwise_conv``,
``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.aspp_head import ASPPHead, ASPPModule
from vistra.models.layers import ConvModule
from vistra.models.layers.depthwise_separable_conv import DepthwiseSeparableConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


class DepthwiseSeparableASPPModule(ASPPModule):
    """``ASPPModule`` whose dilated (> 1) branches are depthwise-separable 3x3 convs."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for i, dilation in enumerate(self.dilations):
            if dilation > 1:
                self[i] = DepthwiseSeparableConvModule(
                    self.in_channels, self.channels, 3, dilation=dilation, padding=dilation,
                    norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
                )  # fmt: skip


@MODELS.register_module()
class DepthwiseSeparableASPPHead(ASPPHead):
    """ASPP with separable convs, plus a low-level decoder: ``inputs[0]`` (the backbone's
    first stage, whatever ``in_index`` says) goes through the 1x1 ``c1_bottleneck``
    (``c1_in_channels=0`` disables it), the ASPP output is resized to it and both are
    fused by two separable 3x3 convs."""

    def __init__(self, c1_in_channels: int, c1_channels: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if c1_in_channels < 0:
            raise ValueError(f"c1_in_channels must be >= 0, got {c1_in_channels}")
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.aspp_modules = DepthwiseSeparableASPPModule(
            dilations=self.dilations, in_channels=self.in_channels, channels=self.channels,
            **common,
        )  # fmt: skip
        self.c1_bottleneck = (
            ConvModule(c1_in_channels, c1_channels, 1, **common) if c1_in_channels > 0 else None
        )
        sep = dict(padding=1, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.sep_bottleneck = nn.Sequential(
            DepthwiseSeparableConvModule(self.channels + c1_channels, self.channels, 3, **sep),
            DepthwiseSeparableConvModule(self.channels, self.channels, 3, **sep),
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        output = self._aspp(self._transform_inputs(inputs))
        if self.c1_bottleneck is not None:
            c1_output = self.c1_bottleneck(inputs[0])
            output = resize(
                output, c1_output.shape[2:], mode="bilinear", align_corners=self.align_corners
            )
            output = torch.cat([output, c1_output], dim=1)
        return self.cls_seg(self.sep_bottleneck(output))
