"""``UPerHead`` (`UPerNet <https://arxiv.org/abs/1807.10221>`_), MMSegmentation 1.x.

A pyramid pooling module on the coarsest input, then an FPN top-down path over all inputs,
every level upsampled to the finest one and fused.

Keys: ``psp_modules.{i}.1.conv``/``.bn`` and ``bottleneck`` (the PPM on the last input),
``lateral_convs.{i}`` and ``fpn_convs.{i}`` (one per input but the last),
``fpn_bottleneck``, ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.heads.psp_head import PPM
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


@MODELS.register_module()
class UPerHead(BaseDecodeHead):
    """Unified perceptual parsing head: PPM (``pool_scales``) on ``inputs[-1]`` plus an FPN
    (1x1 laterals, top-down sums, 3x3 output convs) over the others; the pyramid is
    concatenated at the finest resolution and fused by the 3x3 ``fpn_bottleneck``."""

    def __init__(self, pool_scales: Sequence[int] = (1, 2, 3, 6), **kwargs) -> None:
        super().__init__(input_transform="multiple_select", **kwargs)
        if not isinstance(pool_scales, (list, tuple)) or not pool_scales:
            raise TypeError(
                f"UPerHead pool_scales must be a non-empty list/tuple, got {pool_scales!r}"
            )
        self.pool_scales = tuple(pool_scales)
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        top = self.in_channels[-1]
        self.psp_modules = PPM(
            self.pool_scales, top, self.channels, align_corners=self.align_corners, **common
        )
        self.bottleneck = ConvModule(
            top + len(self.pool_scales) * self.channels, self.channels, 3, padding=1, **common
        )
        # The FPN skips the top level: the PPM output is its lateral. ``inplace=False``
        # because each lateral is reused by the top-down sum.
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for in_channels in self.in_channels[:-1]:
            self.lateral_convs.append(
                ConvModule(in_channels, self.channels, 1, inplace=False, **common)
            )
            self.fpn_convs.append(
                ConvModule(self.channels, self.channels, 3, padding=1, inplace=False, **common)
            )
        self.fpn_bottleneck = ConvModule(
            len(self.in_channels) * self.channels, self.channels, 3, padding=1, **common
        )

    def psp_forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = inputs[-1]
        return self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))

    def _forward_feature(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs = self._transform_inputs(inputs)
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs))
        # Top-down: each level gets the (upsampled) sum of the coarser ones.
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(
                laterals[i],
                size=laterals[i - 1].shape[2:],
                mode="bilinear",
                align_corners=self.align_corners,
            )
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)]
        outs.append(laterals[-1])
        size = outs[0].shape[2:]
        outs = [outs[0]] + [
            resize(o, size=size, mode="bilinear", align_corners=self.align_corners)
            for o in outs[1:]
        ]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self._forward_feature(inputs))
