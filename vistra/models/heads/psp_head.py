"""``PSPHead`` (`PSPNet <https://arxiv.org/abs/1612.01105>`_), MMSegmentation 1.x.

Keys: ``psp_modules.{i}.1.conv``/``.bn`` (index 0 is the parameter-free pool),
``bottleneck``, ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


class PPM(nn.ModuleList):
    """Pooling pyramid: for each scale, adaptive average pool then a 1x1 ConvModule; every
    branch is resized back to the input size."""

    def __init__(
        self,
        pool_scales: Sequence[int],
        in_channels: int,
        channels: int,
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
        align_corners: bool,
        **kwargs,
    ) -> None:
        super().__init__()
        self.pool_scales, self.align_corners = tuple(pool_scales), align_corners
        self.in_channels, self.channels = in_channels, channels
        for scale in pool_scales:
            self.append(
                nn.Sequential(
                    nn.AdaptiveAvgPool2d(scale),
                    ConvModule(
                        in_channels,
                        channels,
                        1,
                        conv_cfg=conv_cfg,
                        norm_cfg=norm_cfg,
                        act_cfg=act_cfg,
                        **kwargs,
                    ),
                )
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return [
            resize(ppm(x), x.shape[2:], mode="bilinear", align_corners=self.align_corners)
            for ppm in self
        ]


@MODELS.register_module()
class PSPHead(BaseDecodeHead):
    """Pyramid pooling (``pool_scales``) concatenated with the input, fused by a 3x3
    ``bottleneck``."""

    def __init__(self, pool_scales: Sequence[int] = (1, 2, 3, 6), **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(pool_scales, (list, tuple)) or not pool_scales:
            raise TypeError(
                f"PSPHead pool_scales must be a non-empty list/tuple, got {pool_scales!r}"
            )
        self.pool_scales = tuple(pool_scales)
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.psp_modules = PPM(
            self.pool_scales, self.in_channels, self.channels,
            align_corners=self.align_corners, **common,
        )  # fmt: skip
        self.bottleneck = ConvModule(
            self.in_channels + len(self.pool_scales) * self.channels, self.channels, 3,
            padding=1, **common,
        )  # fmt: skip

    def _forward_feature(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        return self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self._forward_feature(inputs))
