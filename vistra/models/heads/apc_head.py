"""``APCHead`` (`APCNet <https://openaccess.thecvf.com/content_CVPR_2019/papers/He_Adaptive_Pyramid_Context_Network_for_Semantic_Segmentation_CVPR_2019_paper.pdf>`_),
MMSegmentation 1.x.

Keys: ``acm_modules.{i}.{pooled_redu_conv,input_redu_conv,global_info,residual_conv,
fusion_conv}.conv``/``.bn`` (``fusion_conv`` with ``fusion``), ``acm_modules.{i}.gla`` (a
plain conv to ``pool_scale**2`` affinities), ``bottleneck``, ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


class ACM(nn.Module):
    """Adaptive Context Module: every pixel takes a sigmoid-weighted sum of the
    ``pool_scale x pool_scale`` pooled region features, the weights predicted from the pixel
    plus the global context (``gla``); added back to the reduced input."""

    def __init__(
        self,
        pool_scale: int,
        fusion: bool,
        in_channels: int,
        channels: int,
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> None:
        super().__init__()
        self.pool_scale, self.fusion = pool_scale, fusion
        self.in_channels, self.channels = in_channels, channels
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.pooled_redu_conv = ConvModule(in_channels, channels, 1, **common)
        self.input_redu_conv = ConvModule(in_channels, channels, 1, **common)
        self.global_info = ConvModule(channels, channels, 1, **common)
        self.gla = nn.Conv2d(channels, pool_scale**2, 1, 1, 0)
        self.residual_conv = ConvModule(channels, channels, 1, **common)
        if fusion:
            self.fusion_conv = ConvModule(channels, channels, 1, **common)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        pooled = self.pooled_redu_conv(F.adaptive_avg_pool2d(x, self.pool_scale))
        pooled = pooled.view(n, self.channels, -1).permute(0, 2, 1)  # N, S*S, C
        x = self.input_redu_conv(x)
        # the 1x1 global context broadcast over the map (MMSegmentation's nearest resize)
        global_ctx = resize(self.global_info(F.adaptive_avg_pool2d(x, 1)), size=x.shape[2:])
        affinity = self.gla(x + global_ctx).permute(0, 2, 3, 1)
        affinity = torch.sigmoid(affinity.reshape(n, -1, self.pool_scale**2))  # N, HW, S*S
        z = torch.matmul(affinity, pooled).permute(0, 2, 1).contiguous()
        z = self.residual_conv(z.view(n, self.channels, x.shape[2], x.shape[3]))
        z = F.relu(z + x)
        return self.fusion_conv(z) if self.fusion else z


@MODELS.register_module()
class APCHead(BaseDecodeHead):
    """One ``ACM`` per ``pool_scales`` entry, concatenated with the input and fused by a 3x3
    ``bottleneck``. ``fusion`` adds a 1x1 conv at the end of each ACM."""

    def __init__(
        self, pool_scales: Sequence[int] = (1, 2, 3, 6), fusion: bool = True, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(pool_scales, (list, tuple)) or not pool_scales:
            raise TypeError(
                f"APCHead pool_scales must be a non-empty list/tuple, got {pool_scales!r}"
            )
        self.pool_scales, self.fusion = tuple(pool_scales), fusion
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.acm_modules = nn.ModuleList(
            ACM(scale, fusion, self.in_channels, self.channels, **common)
            for scale in self.pool_scales
        )
        self.bottleneck = ConvModule(
            self.in_channels + len(self.pool_scales) * self.channels, self.channels, 3,
            padding=1, **common,
        )  # fmt: skip

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        feats = torch.cat([x, *(acm(x) for acm in self.acm_modules)], dim=1)
        return self.cls_seg(self.bottleneck(feats))
