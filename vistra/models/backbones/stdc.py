"""``STDCNet`` and ``STDCContextPathNet`` (`Rethinking BiSeNet For Real-time Semantic
Segmentation <https://arxiv.org/abs/2104.13188>`_), MMSegmentation 1.x.

STDCNet: two stride-2 ConvModules, then three stages of Short-Term Dense Concatenate
modules (``arch_settings``: each module's stride). STDCContextPathNet wraps it as
BiSeNet's context path: attention refinement (BiSeNetV1's ARM) on the last two stages
with a global context, and a feature fusion module on the 1/8 map.

Keys: ``backbone.stages.{0,1}`` (ConvModules), ``backbone.stages.{2..4}.{j}`` (STDC
modules: ``layers.{k}``, ``downsample`` and ``skip`` in stride-2 modules; with
``bottleneck_type='add'`` the downsample conv is also ``layers.0.1``, the same module under
two names, as upstream), ``backbone.final_conv`` (``with_final_conv``); ``arms.{i}``
(``conv_layer``, ``atten_conv_layer.1``), ``convs.{i}``, ``conv_avg``, ``ffm.conv0``,
``ffm.attention.{1,2}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.bisenetv1 import AttentionRefinementModule
from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS

FUSION_TYPES = ("add", "cat")


class STDCModule(BaseModule):
    """``num_convs`` convs whose widths halve (1x1, then 3x3s: ``out/2, out/4, ...``, the
    last as wide as the one before), all outputs concatenated. With ``stride=2`` the first
    output is downsampled by a depthwise conv; ``fusion_type='add'`` adds a strided
    shortcut, ``'cat'`` average-pools the first output into the concatenation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        num_convs: int = 4,
        fusion_type: str = "add",
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if num_convs <= 1:
            raise ValueError(f"num_convs must be > 1, got {num_convs}")
        if fusion_type not in FUSION_TYPES:
            raise ValueError(f"fusion_type={fusion_type!r}: valid: {list(FUSION_TYPES)}")
        self.stride = stride
        self.with_downsample = stride == 2
        self.fusion_type = fusion_type
        self.layers = nn.ModuleList()
        half = out_channels // 2
        # upstream's first 1x1 conv keeps ConvModule's default ReLU, whatever act_cfg says
        conv_0 = ConvModule(in_channels, half, kernel_size=1, norm_cfg=norm_cfg)
        if self.with_downsample:
            self.downsample = ConvModule(
                half, half, 3, stride=2, padding=1, groups=half, norm_cfg=norm_cfg, act_cfg=None
            )
            if fusion_type == "add":
                self.layers.append(nn.Sequential(conv_0, self.downsample))
                self.skip: nn.Module = nn.Sequential(
                    ConvModule(
                        in_channels,
                        in_channels,
                        3,
                        stride=2,
                        padding=1,
                        groups=in_channels,
                        norm_cfg=norm_cfg,
                        act_cfg=None,
                    ),
                    ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None),
                )
            else:
                self.layers.append(conv_0)
                self.skip = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.layers.append(conv_0)
        for i in range(1, num_convs):
            out_factor = 2 ** (i + 1) if i != num_convs - 1 else 2**i
            self.layers.append(
                ConvModule(
                    out_channels // 2**i,
                    out_channels // out_factor,
                    3,
                    padding=1,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                )
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.fusion_type == "add":
            return self.forward_add(inputs)
        return self.forward_cat(inputs)

    def forward_add(self, inputs: torch.Tensor) -> torch.Tensor:
        outs = []
        x = inputs
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        if self.with_downsample:
            inputs = self.skip(inputs)
        return torch.cat(outs, dim=1) + inputs

    def forward_cat(self, inputs: torch.Tensor) -> torch.Tensor:
        x0 = self.layers[0](inputs)
        outs = [x0]
        x = self.downsample(x0) if self.with_downsample else x0
        for layer in self.layers[1:]:
            x = layer(x)
            outs.append(x)
        if self.with_downsample:
            outs[0] = self.skip(x0)
        return torch.cat(outs, dim=1)


class FeatureFusionModule(BaseModule):
    """STDC's fusion module (not BiSeNetV1's): concatenate, 1x1 ConvModule, then add a
    channel-attention reweighted copy (pool -> 1x1 to ``out/scale_factor`` with ReLU ->
    1x1 back -> sigmoid, no norms)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale_factor: int = 4,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        channels = out_channels // scale_factor
        self.conv0 = ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            ConvModule(out_channels, channels, 1, norm_cfg=None, bias=False, act_cfg=act_cfg),
            ConvModule(channels, out_channels, 1, norm_cfg=None, bias=False, act_cfg=None),
            nn.Sigmoid(),
        )

    def forward(self, spatial_inputs: torch.Tensor, context_inputs: torch.Tensor) -> torch.Tensor:
        x = self.conv0(torch.cat([spatial_inputs, context_inputs], dim=1))
        return x * self.attention(x) + x


@MODELS.register_module()
class STDCNet(BaseModule):
    """Outputs the three STDC stages (1/8, 1/16, 1/32; the last through ``final_conv``
    with ``with_final_conv``). ``channels``: the two stem convs and the three stages."""

    arch_settings = {
        "STDCNet1": [(2, 1), (2, 1), (2, 1)],
        "STDCNet2": [(2, 1, 1, 1), (2, 1, 1, 1, 1), (2, 1, 1)],
    }

    def __init__(
        self,
        stdc_type: str,
        in_channels: int,
        channels: Sequence[int],
        bottleneck_type: str,
        norm_cfg: dict | None,
        act_cfg: dict | None,
        num_convs: int = 4,
        with_final_conv: bool = False,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if stdc_type not in self.arch_settings:
            raise KeyError(f"stdc_type={stdc_type!r}: valid: {sorted(self.arch_settings)}")
        if bottleneck_type not in FUSION_TYPES:
            raise ValueError(f"bottleneck_type={bottleneck_type!r}: valid: {list(FUSION_TYPES)}")
        if len(channels) != 5:
            raise ValueError(f"channels must have 5 entries, got {tuple(channels)!r}")
        self.in_channels, self.channels = in_channels, tuple(channels)
        self.stage_strides = self.arch_settings[stdc_type]
        self.prtrained = pretrained  # upstream's spelling; unused there too
        self.num_convs, self.with_final_conv = num_convs, with_final_conv
        common = dict(stride=2, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.stages = nn.ModuleList(
            [
                ConvModule(in_channels, self.channels[0], 3, **common),
                ConvModule(self.channels[0], self.channels[1], 3, **common),
            ]
        )
        self.num_shallow_features = len(self.stages)
        for strides in self.stage_strides:
            idx = len(self.stages) - 1
            self.stages.append(
                self._make_stage(
                    self.channels[idx],
                    self.channels[idx + 1],
                    strides,
                    norm_cfg,
                    act_cfg,
                    bottleneck_type,
                )
            )
        if with_final_conv:
            self.final_conv = ConvModule(
                self.channels[-1],
                max(1024, self.channels[-1]),
                1,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
            )

    def _make_stage(
        self,
        in_channels: int,
        out_channels: int,
        strides: Sequence[int],
        norm_cfg: dict | None,
        act_cfg: dict | None,
        bottleneck_type: str,
    ) -> nn.Sequential:
        return nn.Sequential(
            *(
                STDCModule(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    stride,
                    norm_cfg,
                    act_cfg,
                    num_convs=self.num_convs,
                    fusion_type=bottleneck_type,
                )
                for i, stride in enumerate(strides)
            )
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        if self.with_final_conv:
            outs[-1] = self.final_conv(outs[-1])
        return tuple(outs[self.num_shallow_features :])


@MODELS.register_module()
class STDCContextPathNet(BaseModule):
    """BiSeNet's context path on STDCNet. Outputs, as upstream: the backbone's 1/8 map,
    the refined 1/32 and 1/16 maps (each upsampled by one level, to 1/16 and 1/8, and
    convolved), and the fusion of the 1/8 map with the second of them."""

    def __init__(
        self,
        backbone_cfg: dict,
        last_in_channels: Sequence[int] = (1024, 512),
        out_channels: int = 128,
        ffm_cfg: dict = dict(in_channels=512, out_channels=256, scale_factor=4),  # noqa: B006
        upsample_mode: str = "nearest",
        align_corners: bool | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.backbone = MODELS.build(backbone_cfg, key_path="backbone_cfg")
        self.arms = nn.ModuleList()
        self.convs = nn.ModuleList()
        for channels in last_in_channels:
            self.arms.append(AttentionRefinementModule(channels, out_channels))
            self.convs.append(
                ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg)
            )
        self.conv_avg = ConvModule(last_in_channels[0], out_channels, 1, norm_cfg=norm_cfg)
        self.ffm = FeatureFusionModule(**ffm_cfg)
        self.upsample_mode, self.align_corners = upsample_mode, align_corners

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return resize(
            x, size=like.shape[2:], mode=self.upsample_mode, align_corners=self.align_corners
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = list(self.backbone(x))
        if len(outs) < len(self.arms) + 1:
            raise ValueError(
                f"STDCContextPathNet needs at least {len(self.arms) + 1} backbone outputs, "
                f"got {len(outs)}"
            )
        feature_up = self._up(self.conv_avg(F.adaptive_avg_pool2d(outs[-1], 1)), outs[-1])
        arms_out = []
        for i, (arm, conv) in enumerate(zip(self.arms, self.convs, strict=True)):
            x_arm = arm(outs[-1 - i]) + feature_up
            feature_up = conv(self._up(x_arm, outs[-2 - i]))
            arms_out.append(feature_up)
        feat_fuse = self.ffm(outs[0], arms_out[1])
        return (outs[0], *arms_out, feat_fuse)
