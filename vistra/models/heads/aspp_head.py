"""``ASPPHead`` (`DeepLabV3 <https://arxiv.org/abs/1706.05587>`_), MMSegmentation 1.x.

Keys: ``image_pool.1.conv``/``.bn``, ``aspp_modules.{i}.conv``/``.bn``, ``bottleneck``,
``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


class ASPPModule(nn.ModuleList):
    """Parallel atrous convs: 1x1 for dilation 1, 3x3 with that dilation otherwise."""

    def __init__(
        self,
        dilations: Sequence[int],
        in_channels: int,
        channels: int,
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> None:
        super().__init__()
        self.dilations, self.in_channels, self.channels = tuple(dilations), in_channels, channels
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        for dilation in dilations:
            self.append(
                ConvModule(
                    in_channels,
                    channels,
                    1 if dilation == 1 else 3,
                    dilation=dilation,
                    padding=0 if dilation == 1 else dilation,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                )
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return [module(x) for module in self]


@MODELS.register_module()
class ASPPHead(BaseDecodeHead):
    """Image-level pooling branch plus one atrous branch per ``dilations`` entry,
    concatenated and fused by a 3x3 ``bottleneck``."""

    def __init__(self, dilations: Sequence[int] = (1, 6, 12, 18), **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(dilations, (list, tuple)) or not dilations:
            raise TypeError(f"ASPPHead dilations must be a non-empty list/tuple, got {dilations!r}")
        self.dilations = tuple(dilations)
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), ConvModule(self.in_channels, self.channels, 1, **common)
        )
        self.aspp_modules = ASPPModule(self.dilations, self.in_channels, self.channels, **common)
        self.bottleneck = ConvModule(
            (len(self.dilations) + 1) * self.channels, self.channels, 3, padding=1, **common
        )

    def _aspp(self, x: torch.Tensor) -> torch.Tensor:
        """The fused ASPP features of one input map."""
        pooled = resize(
            self.image_pool(x), x.shape[2:], mode="bilinear", align_corners=self.align_corners
        )
        return self.bottleneck(torch.cat([pooled, *self.aspp_modules(x)], dim=1))

    def _forward_feature(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self._aspp(self._transform_inputs(inputs))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self._forward_feature(inputs))
