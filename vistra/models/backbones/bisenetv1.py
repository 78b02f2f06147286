"""``BiSeNetV1`` (`BiSeNet: Bilateral Segmentation Network for Real-time Semantic
Segmentation <https://arxiv.org/abs/1808.00897>`_), MMSegmentation 1.x.

A spatial path (three strided convs and a 1x1, 1/8 resolution) and a context path (a
ResNet from ``backbone_cfg`` with attention refinement at 1/16 and 1/32 and a global
context), fused by a feature fusion module.

Keys: ``context_path.backbone.*`` (the ResNet), ``context_path.arm16``/``arm32``
(``conv_layer``, ``atten_conv_layer.1``), ``context_path.conv_head32``/``conv_head16``,
``context_path.gap_conv.1``, ``spatial_path.layer{1..4}``, ``ffm.conv1``,
``ffm.conv_atten.0``; every ConvModule as ``.conv``/``.bn``.

``AttentionRefinementModule`` is also STDC's (``vistra.models.backbones.stdc``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS

_BN = dict(type="BN")
_RELU = dict(type="ReLU")


def _check_len(name: str, value: Sequence[int], n: int) -> None:
    if len(value) != n:
        raise ValueError(f"{name} must have {n} entries, got {tuple(value)!r}")


class SpatialPath(BaseModule):
    """A 7x7 stride-2 conv, two 3x3 stride-2 convs and a 1x1 conv (``num_channels``):
    1/8 of the input, with its spatial detail."""

    def __init__(
        self,
        in_channels: int = 3,
        num_channels: Sequence[int] = (64, 64, 64, 128),
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        _check_len("spatial_channels", num_channels, 4)
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        # (kernel, stride, padding) of the four layers
        shapes = ((7, 2, 3), (3, 2, 1), (3, 2, 1), (1, 1, 0))
        self.layers: list[str] = []
        cin = in_channels
        for i, ((k, s, p), cout) in enumerate(zip(shapes, num_channels, strict=True)):
            name = f"layer{i + 1}"
            self.add_module(name, ConvModule(cin, cout, k, stride=s, padding=p, **common))
            self.layers.append(name)
            cin = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.layers:
            x = getattr(self, name)(x)
        return x


class AttentionRefinementModule(BaseModule):
    """A 3x3 ConvModule, reweighted channel-wise by a global-pool -> 1x1 conv -> BN ->
    sigmoid attention (``atten_conv_layer``)."""

    def __init__(
        self,
        in_channels: int,
        out_channel: int,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.conv_layer = ConvModule(
            in_channels,
            out_channel,
            3,
            padding=1,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
        )
        self.atten_conv_layer = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            ConvModule(
                out_channel,
                out_channel,
                1,
                bias=False,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg,
                act_cfg=None,
            ),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_layer(x)
        return x * self.atten_conv_layer(x)


class ContextPath(BaseModule):
    """The backbone's 1/16 and 1/32 maps, refined (ARM), summed top-down with a global
    context and upsampled (nearest) by one level each; returns the maps at 1/8 and 1/16."""

    def __init__(
        self,
        backbone_cfg: dict,
        context_channels: Sequence[int] = (128, 256, 512),
        align_corners: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        _check_len("context_channels", context_channels, 3)
        c0, c1, c2 = context_channels
        self.backbone = MODELS.build(backbone_cfg, key_path="backbone_cfg")
        self.align_corners = align_corners
        # upstream builds the ARMs with their own defaults, not conv/norm/act_cfg
        self.arm16 = AttentionRefinementModule(c1, c0)
        self.arm32 = AttentionRefinementModule(c2, c0)
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_head32 = ConvModule(c0, c0, 3, padding=1, **common)
        self.conv_head16 = ConvModule(c0, c0, 3, padding=1, **common)
        self.gap_conv = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), ConvModule(c2, c0, 1, **common))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.backbone(x)
        if len(feats) != 4:
            raise ValueError(
                f"BiSeNetV1's context path needs 4 backbone outputs (out_indices=(0, 1, 2, 3)), "
                f"got {len(feats)}"
            )
        _, x_8, x_16, x_32 = feats
        x_gap = self.gap_conv(x_32)
        x_32_up = resize(self.arm32(x_32) + x_gap, size=x_16.shape[2:], mode="nearest")
        x_32_up = self.conv_head32(x_32_up)
        x_16_up = resize(self.arm16(x_16) + x_32_up, size=x_8.shape[2:], mode="nearest")
        x_16_up = self.conv_head16(x_16_up)
        return x_16_up, x_32_up


class FeatureFusionModule(BaseModule):
    """Concatenate the two paths, fuse with a 1x1 ConvModule, and add a channel-attention
    reweighted copy (global pool -> 1x1 conv with BN and ReLU -> sigmoid)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv1 = ConvModule(in_channels, out_channels, 1, **common)
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        # MMSegmentation's variant: a BN'd 1x1 conv where the paper has two plain ones
        self.conv_atten = nn.Sequential(
            ConvModule(out_channels, out_channels, 1, bias=False, **common), nn.Sigmoid()
        )

    def forward(self, x_sp: torch.Tensor, x_cp: torch.Tensor) -> torch.Tensor:
        x_fuse = self.conv1(torch.cat([x_sp, x_cp], dim=1))
        return x_fuse * self.conv_atten(self.gap(x_fuse)) + x_fuse


@MODELS.register_module()
class BiSeNetV1(BaseModule):
    """Outputs, picked by ``out_indices``: the fused map (``out_channels``, 1/8), the
    context path's 1/8 and 1/16 maps (``context_channels[0]``).

    ``spatial_channels``: the spatial path's four layers; ``context_channels``: the ARM
    output and the backbone's 1/16 and 1/32 widths. ``conv_cfg``/``norm_cfg``/``act_cfg``
    are stored but, as upstream, the sub-modules use their own BN/ReLU defaults (only the
    backbone sees ``backbone_cfg``'s norm).
    """

    def __init__(
        self,
        backbone_cfg: dict,
        in_channels: int = 3,
        spatial_channels: Sequence[int] = (64, 64, 64, 128),
        context_channels: Sequence[int] = (128, 256, 512),
        out_indices: Sequence[int] = (0, 1, 2),
        align_corners: bool = False,
        out_channels: int = 256,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        act_cfg: dict | None = _RELU,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        _check_len("spatial_channels", spatial_channels, 4)
        _check_len("context_channels", context_channels, 3)
        out_indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
        bad = [i for i in out_indices if not -3 <= i < 3]
        if bad:
            raise ValueError(f"out_indices={out_indices!r}: BiSeNetV1 has 3 outputs (0, 1, 2)")
        self.out_indices = out_indices
        self.align_corners = align_corners
        self.context_path = ContextPath(backbone_cfg, context_channels, align_corners)
        self.spatial_path = SpatialPath(in_channels, spatial_channels)
        # the FFM takes spatial_channels[-1] + context_channels[0] channels, which upstream
        # writes as context_channels[1] (true for every published setting)
        self.ffm = FeatureFusionModule(context_channels[1], out_channels)
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x_context8, x_context16 = self.context_path(x)
        x_fuse = self.ffm(self.spatial_path(x), x_context8)
        outs = (x_fuse, x_context8, x_context16)
        return tuple(outs[i] for i in self.out_indices)
