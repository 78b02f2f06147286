"""``DMHead`` (`DMNet <https://openaccess.thecvf.com/content_ICCV_2019/papers/He_Dynamic_Multi-Scale_Filters_for_Semantic_Segmentation_ICCV_2019_paper.pdf>`_),
MMSegmentation 1.x.

Keys: ``dcm_modules.{i}.filter_gen_conv`` (a plain conv), ``dcm_modules.{i}.input_redu_conv``
(``ConvModule``), ``dcm_modules.{i}.norm`` (with ``norm_cfg``: the norm after the dynamic conv,
keyed by its attribute name), ``dcm_modules.{i}.fusion_conv`` (with ``fusion``), ``bottleneck``,
``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule, build_activation_layer, build_norm_layer
from vistra.registry import MODELS


class DCM(nn.Module):
    """Dynamic Convolutional Module: a ``filter_size x filter_size`` depthwise filter per
    image and channel, generated from the adaptively pooled input, applied to the reduced
    input (zero padding; even sizes pad one more on the top/left)."""

    def __init__(
        self,
        filter_size: int,
        fusion: bool,
        in_channels: int,
        channels: int,
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> None:
        super().__init__()
        self.filter_size, self.fusion = filter_size, fusion
        self.in_channels, self.channels = in_channels, channels
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.filter_gen_conv = nn.Conv2d(in_channels, channels, 1, 1, 0)
        self.input_redu_conv = ConvModule(in_channels, channels, 1, **common)
        self.norm = None if norm_cfg is None else build_norm_layer(norm_cfg, channels)[1]
        self.activate = build_activation_layer(act_cfg)
        if fusion:
            self.fusion_conv = ConvModule(channels, channels, 1, **common)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.filter_size
        filters = self.filter_gen_conv(F.adaptive_avg_pool2d(x, k))
        x = self.input_redu_conv(x)
        n, c, h, w = x.shape
        # all images' channels as groups of one conv over a batch of one
        pad = (k - 1) // 2
        p2d = (pad, pad, pad, pad) if (k - 1) % 2 == 0 else (pad + 1, pad, pad + 1, pad)
        x = F.pad(x.view(1, n * c, h, w), p2d, mode="constant", value=0)
        out = F.conv2d(x, filters.view(n * c, 1, k, k), groups=n * c).view(n, c, h, w)
        if self.norm is not None:
            out = self.norm(out)
        out = self.activate(out)
        return self.fusion_conv(out) if self.fusion else out


@MODELS.register_module()
class DMHead(BaseDecodeHead):
    """One ``DCM`` per ``filter_sizes`` entry, concatenated with the input and fused by a 3x3
    ``bottleneck``. ``fusion`` adds a 1x1 conv at the end of each DCM."""

    def __init__(
        self, filter_sizes: Sequence[int] = (1, 3, 5, 7), fusion: bool = False, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(filter_sizes, (list, tuple)) or not filter_sizes:
            raise TypeError(
                f"DMHead filter_sizes must be a non-empty list/tuple, got {filter_sizes!r}"
            )
        if self.act_cfg is None:
            raise ValueError("DMHead needs an act_cfg: each DCM ends with that activation")
        self.filter_sizes, self.fusion = tuple(filter_sizes), fusion
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.dcm_modules = nn.ModuleList(
            DCM(size, fusion, self.in_channels, self.channels, **common)
            for size in self.filter_sizes
        )
        self.bottleneck = ConvModule(
            self.in_channels + len(self.filter_sizes) * self.channels, self.channels, 3,
            padding=1, **common,
        )  # fmt: skip

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        feats = torch.cat([x, *(dcm(x) for dcm in self.dcm_modules)], dim=1)
        return self.cls_seg(self.bottleneck(feats))
