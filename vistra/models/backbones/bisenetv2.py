"""``BiSeNetV2`` (`BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time
Semantic Segmentation <https://arxiv.org/abs/2004.02147>`_), MMSegmentation 1.x.

A wide, shallow detail branch (1/8) and a narrow, deep semantic branch (stem, gather-and-
expand layers, context embedding; 1/32), merged by bilateral guided aggregation.

Keys: ``detail.detail_branch.{i}.{j}`` (ConvModules); ``semantic.stage1`` (the stem:
``conv_first``, ``convs.{0,1}``, ``fuse_last``), ``semantic.stage{2..4}.{j}`` (GE layers:
``conv1``, ``dwconv.{0,1}``, ``conv2.0``, ``shortcut.0.{depthwise,pointwise}_conv`` in
the stride-2 ones), ``semantic.stage4_CEBlock`` (``gap.1`` a norm, ``conv_gap``,
``conv_last``); ``bga.{detail_dwconv.0, detail_down.0, semantic_conv.0,
semantic_dwconv.0, conv}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import (
    ConvModule,
    DepthwiseSeparableConvModule,
    build_activation_layer,
    build_norm_layer,
)
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS

_BN = dict(type="BN")
_RELU = dict(type="ReLU")


class DetailBranch(BaseModule):
    """Three stages of 3x3 ConvModules, each starting with a stride-2 one (two convs in
    the first stage, three in the others)."""

    def __init__(
        self,
        detail_channels: Sequence[int] = (64, 64, 128),
        in_channels: int = 3,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        common = dict(padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        stages = []
        cin = in_channels
        for i, cout in enumerate(detail_channels):
            convs = [ConvModule(cin, cout, 3, stride=2, **common)]
            convs += [ConvModule(cout, cout, 3, **common) for _ in range(1 if i == 0 else 2)]
            stages.append(nn.Sequential(*convs))
            cin = cout
        self.detail_branch = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.detail_branch:
            x = stage(x)
        return x


class StemBlock(BaseModule):
    """A stride-2 conv, then a conv path (1x1 halving, 3x3 stride 2) beside a max pool,
    concatenated and fused by a 3x3 conv: 1/4 of the input."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 16,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        half = out_channels // 2
        self.conv_first = ConvModule(in_channels, out_channels, 3, stride=2, padding=1, **common)
        self.convs = nn.Sequential(
            ConvModule(out_channels, half, 1, **common),
            ConvModule(half, out_channels, 3, stride=2, padding=1, **common),
        )
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=False)
        self.fuse_last = ConvModule(out_channels * 2, out_channels, 3, padding=1, **common)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(x)
        return self.fuse_last(torch.cat([self.convs(x), self.pool(x)], dim=1))


class GELayer(BaseModule):
    """Gather-and-expand layer: 3x3 conv, depthwise expansion by ``exp_ratio`` (two
    depthwise convs when ``stride=2``), 1x1 projection, plus the identity or (stride 2) a
    depthwise-separable shortcut, then the activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        exp_ratio: int = 6,
        stride: int = 1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        mid = in_channels * exp_ratio
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.conv1 = ConvModule(in_channels, in_channels, 3, padding=1, act_cfg=act_cfg, **common)
        self.shortcut: nn.Module | None
        if stride == 1:
            self.dwconv = nn.Sequential(
                ConvModule(
                    in_channels,
                    mid,
                    3,
                    stride=1,
                    padding=1,
                    groups=in_channels,
                    act_cfg=act_cfg,
                    **common,
                )
            )
            self.shortcut = None
        else:
            self.dwconv = nn.Sequential(
                ConvModule(
                    in_channels,
                    mid,
                    3,
                    stride=stride,
                    padding=1,
                    groups=in_channels,
                    bias=False,
                    act_cfg=None,
                    **common,
                ),
                ConvModule(mid, mid, 3, padding=1, groups=mid, act_cfg=act_cfg, **common),
            )
            self.shortcut = nn.Sequential(
                DepthwiseSeparableConvModule(
                    in_channels,
                    out_channels,
                    3,
                    stride=stride,
                    padding=1,
                    dw_norm_cfg=norm_cfg,
                    dw_act_cfg=None,
                    pw_norm_cfg=norm_cfg,
                    pw_act_cfg=None,
                )
            )
        self.conv2 = nn.Sequential(
            ConvModule(mid, out_channels, 1, bias=False, act_cfg=None, **common)
        )
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.dwconv(self.conv1(x)))
        out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.act(out)


class CEBlock(BaseModule):
    """Context embedding: global pool and BN, a 1x1 conv, added back to the input, then a
    3x3 conv."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 16,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.in_channels, self.out_channels = in_channels, out_channels
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.gap = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), build_norm_layer(norm_cfg, in_channels)[1]
        )
        self.conv_gap = ConvModule(in_channels, out_channels, 1, **common)
        self.conv_last = ConvModule(out_channels, out_channels, 3, padding=1, **common)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(x + self.conv_gap(self.gap(x)))


class SemanticBranch(BaseModule):
    """``stage1`` the stem, then per further width a stride-2 GE layer followed by one GE
    layer (three in the last stage), then ``stage{n}_CEBlock``; returns every stage's
    output."""

    def __init__(
        self,
        semantic_channels: Sequence[int] = (16, 32, 64, 128),
        in_channels: int = 3,
        exp_ratio: int = 6,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.in_channels, self.semantic_channels = in_channels, tuple(semantic_channels)
        n = len(semantic_channels)
        self.semantic_stages: list[str] = []
        for i, width in enumerate(semantic_channels):
            if i == 0:
                stage: nn.Module = StemBlock(in_channels, width)
            else:
                repeats = 3 if i == n - 1 else 1
                prev = semantic_channels[i - 1]
                stage = nn.Sequential(
                    GELayer(prev, width, exp_ratio, 2),
                    *(GELayer(width, width, exp_ratio, 1) for _ in range(repeats)),
                )
            self.add_module(f"stage{i + 1}", stage)
            self.semantic_stages.append(f"stage{i + 1}")
        self.add_module(f"stage{n}_CEBlock", CEBlock(semantic_channels[-1], semantic_channels[-1]))
        self.semantic_stages.append(f"stage{n}_CEBlock")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for name in self.semantic_stages:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs


class BGALayer(BaseModule):
    """Bilateral guided aggregation: each branch gates the other (sigmoid) at its own
    resolution; the two results are summed at the detail resolution and fused by a 3x3
    conv."""

    def __init__(
        self,
        out_channels: int = 128,
        align_corners: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        c = self.out_channels = out_channels
        self.align_corners = align_corners

        def dwsep() -> nn.Sequential:
            return nn.Sequential(
                DepthwiseSeparableConvModule(
                    c,
                    c,
                    3,
                    stride=1,
                    padding=1,
                    dw_norm_cfg=norm_cfg,
                    dw_act_cfg=None,
                    pw_norm_cfg=None,
                    pw_act_cfg=None,
                )
            )

        plain = dict(bias=False, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None)
        self.detail_dwconv = dwsep()
        self.detail_down = nn.Sequential(
            ConvModule(c, c, 3, stride=2, padding=1, **plain),
            nn.AvgPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=False),
        )
        self.semantic_conv = nn.Sequential(ConvModule(c, c, 3, padding=1, **plain))
        self.semantic_dwconv = dwsep()
        self.conv = ConvModule(
            c, c, 3, padding=1, inplace=True, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg
        )

    def _resize(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return resize(x, size=like.shape[2:], mode="bilinear", align_corners=self.align_corners)

    def forward(self, x_d: torch.Tensor, x_s: torch.Tensor) -> torch.Tensor:
        detail_dwconv = self.detail_dwconv(x_d)
        detail_down = self.detail_down(x_d)
        semantic_conv = self._resize(self.semantic_conv(x_s), detail_dwconv)
        semantic_dwconv = self.semantic_dwconv(x_s)
        fuse_1 = detail_dwconv * torch.sigmoid(semantic_conv)
        fuse_2 = self._resize(detail_down * torch.sigmoid(semantic_dwconv), fuse_1)
        return self.conv(fuse_1 + fuse_2)


@MODELS.register_module()
class BiSeNetV2(BaseModule):
    """Outputs, picked by ``out_indices``: the aggregated map (``bga_channels``, 1/8), then
    the semantic stages before the CE block (1/4 .. 1/32).

    As upstream, the branches use their own BN/ReLU defaults; ``conv_cfg``/``norm_cfg``/
    ``act_cfg`` are stored only. ``init_cfg=None`` means Kaiming convs and unit norms.
    """

    def __init__(
        self,
        in_channels: int = 3,
        detail_channels: Sequence[int] = (64, 64, 128),
        semantic_channels: Sequence[int] = (16, 32, 64, 128),
        semantic_expansion_ratio: int = 6,
        bga_channels: int = 128,
        out_indices: Sequence[int] = (0, 1, 2, 3, 4),
        align_corners: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type="Kaiming", layer="Conv2d"),
                dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
            ]
        super().__init__(init_cfg)
        if detail_channels[-1] != bga_channels or semantic_channels[-1] != bga_channels:
            raise ValueError(
                f"detail_channels[-1] ({detail_channels[-1]}) and semantic_channels[-1] "
                f"({semantic_channels[-1]}) must both equal bga_channels ({bga_channels})"
            )
        num_outs = len(semantic_channels) + 1
        out_indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
        if any(not -num_outs <= i < num_outs for i in out_indices):
            raise ValueError(
                f"out_indices={out_indices!r}: BiSeNetV2 with {len(semantic_channels)} "
                f"semantic stages has {num_outs} outputs (0..{num_outs - 1})"
            )
        self.in_channels = in_channels
        self.out_indices = out_indices
        self.detail_channels = tuple(detail_channels)
        self.semantic_channels = tuple(semantic_channels)
        self.semantic_expansion_ratio = semantic_expansion_ratio
        self.bga_channels = bga_channels
        self.align_corners = align_corners
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.detail = DetailBranch(self.detail_channels, in_channels)
        self.semantic = SemanticBranch(
            self.semantic_channels, in_channels, semantic_expansion_ratio
        )
        self.bga = BGALayer(bga_channels, align_corners)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x_detail = self.detail(x)
        semantic = self.semantic(x)
        outs = [self.bga(x_detail, semantic[-1]), *semantic[:-1]]
        return tuple(outs[i] for i in self.out_indices)
