"""``FastSCNN`` backbone (`Fast-SCNN: Fast Semantic Segmentation Network
<https://arxiv.org/abs/1902.04502>`_), MMSegmentation 1.x.

Keys: ``learning_to_downsample.conv``/``.dsconv1``/``.dsconv2`` (a ConvModule and two
depthwise-separable ones), ``global_feature_extractor.bottleneck{1,2,3}.{j}.conv.{k}``
(MobileNetV2 ``InvertedResidual`` blocks), ``global_feature_extractor.ppm.{i}.1``
(``PPM`` of ``psp_head.py``), ``global_feature_extractor.out``,
``feature_fusion.dwconv``/``.conv_lower_res``/``.conv_higher_res``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.heads.psp_head import PPM
from vistra.models.layers import ConvModule, DepthwiseSeparableConvModule
from vistra.models.layers.inverted_residual import InvertedResidual
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer="Conv2d"),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]


class LearningToDownsample(nn.Module):
    """A strided 3x3 ConvModule and two strided depthwise-separable convs (1/8)."""

    def __init__(
        self,
        in_channels: int,
        dw_channels: Sequence[int],
        out_channels: int,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        dw_act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.dw_act_cfg = dw_act_cfg
        dw1, dw2 = dw_channels[0], dw_channels[1]
        self.conv = ConvModule(
            in_channels, dw1, 3, stride=2, padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            act_cfg=act_cfg,
        )  # fmt: skip
        # upstream leaves these with the default conv and (pointwise) activation configs
        self.dsconv1 = DepthwiseSeparableConvModule(
            dw1, dw2, 3, stride=2, padding=1, norm_cfg=norm_cfg, dw_act_cfg=dw_act_cfg
        )
        self.dsconv2 = DepthwiseSeparableConvModule(
            dw2, out_channels, 3, stride=2, padding=1, norm_cfg=norm_cfg, dw_act_cfg=dw_act_cfg
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dsconv2(self.dsconv1(self.conv(x)))


class GlobalFeatureExtractor(nn.Module):
    """Three stages of inverted residual blocks, a pyramid pooling module and a 3x3
    ConvModule over the pooled features concatenated with the input."""

    def __init__(
        self,
        in_channels: int = 64,
        block_channels: Sequence[int] = (64, 96, 128),
        out_channels: int = 128,
        expand_ratio: int = 6,
        num_blocks: Sequence[int] = (3, 3, 3),
        strides: Sequence[int] = (2, 2, 1),
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if not len(block_channels) == len(num_blocks) == 3:
            raise ValueError(
                "GlobalFeatureExtractor needs 3 block_channels and 3 num_blocks, got "
                f"{tuple(block_channels)} and {tuple(num_blocks)}"
            )
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        ins = (in_channels, block_channels[0], block_channels[1])
        for i in range(3):
            blocks = [
                InvertedResidual(
                    ins[i] if j == 0 else block_channels[i], block_channels[i],
                    strides[i] if j == 0 else 1, expand_ratio, norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                )
                for j in range(num_blocks[i])
            ]  # fmt: skip
            self.add_module(f"bottleneck{i + 1}", nn.Sequential(*blocks))
        self.ppm = PPM(
            pool_scales, block_channels[2], block_channels[2] // 4, conv_cfg=conv_cfg,
            norm_cfg=norm_cfg, act_cfg=act_cfg, align_corners=align_corners,
        )  # fmt: skip
        self.out = ConvModule(
            block_channels[2] * 2, out_channels, 3, padding=1, conv_cfg=conv_cfg,
            norm_cfg=norm_cfg, act_cfg=act_cfg,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck3(self.bottleneck2(self.bottleneck1(x)))
        return self.out(torch.cat([x, *self.ppm(x)], dim=1))


class FeatureFusionModule(nn.Module):
    """The low-resolution branch upsampled to the high-resolution one, depthwise conv and
    1x1 projection; the high-resolution branch projected by a 1x1; summed, then ReLU."""

    def __init__(
        self,
        higher_in_channels: int,
        lower_in_channels: int,
        out_channels: int,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        dwconv_act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        conv_act_cfg: dict | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.conv_cfg, self.norm_cfg = conv_cfg, norm_cfg
        self.dwconv_act_cfg, self.conv_act_cfg = dwconv_act_cfg, conv_act_cfg
        self.align_corners = align_corners
        self.dwconv = ConvModule(
            lower_in_channels, out_channels, 3, padding=1, groups=out_channels,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=dwconv_act_cfg,
        )  # fmt: skip
        self.conv_lower_res = ConvModule(
            out_channels, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            act_cfg=conv_act_cfg,
        )  # fmt: skip
        self.conv_higher_res = ConvModule(
            higher_in_channels, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            act_cfg=conv_act_cfg,
        )  # fmt: skip
        self.relu = nn.ReLU(True)

    def forward(self, higher: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
        lower = resize(lower, higher.shape[2:], mode="bilinear", align_corners=self.align_corners)
        lower = self.conv_lower_res(self.dwconv(lower))
        return self.relu(self.conv_higher_res(higher) + lower)


@MODELS.register_module()
class FastSCNN(BaseModule):
    """Learning-to-downsample (1/8), global feature extractor (1/32) and feature fusion
    (1/8). Returns the tuple of ``(higher-res, lower-res, fused)`` features picked by
    ``out_indices``."""

    def __init__(
        self,
        in_channels: int = 3,
        downsample_dw_channels: Sequence[int] = (32, 48),
        global_in_channels: int = 64,
        global_block_channels: Sequence[int] = (64, 96, 128),
        global_block_strides: Sequence[int] = (2, 2, 1),
        global_out_channels: int = 128,
        higher_in_channels: int = 64,
        lower_in_channels: int = 128,
        fusion_out_channels: int = 128,
        out_indices: Sequence[int] = (0, 1, 2),
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        align_corners: bool = False,
        dw_act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(_DEFAULT_INIT if init_cfg is None else init_cfg)
        if global_in_channels != higher_in_channels:
            raise ValueError(
                f"FastSCNN global_in_channels={global_in_channels} must equal "
                f"higher_in_channels={higher_in_channels}"
            )
        if global_out_channels != lower_in_channels:
            raise ValueError(
                f"FastSCNN global_out_channels={global_out_channels} must equal "
                f"lower_in_channels={lower_in_channels}"
            )
        if any(i not in range(3) for i in out_indices):
            raise ValueError(f"FastSCNN out_indices={tuple(out_indices)}: each must be 0, 1 or 2")
        self.in_channels = in_channels
        self.downsample_dw_channels1, self.downsample_dw_channels2 = downsample_dw_channels[:2]
        self.global_in_channels, self.global_block_channels = (
            global_in_channels,
            global_block_channels,
        )
        self.global_block_strides, self.global_out_channels = (
            global_block_strides,
            global_out_channels,
        )
        self.higher_in_channels, self.lower_in_channels = higher_in_channels, lower_in_channels
        self.fusion_out_channels, self.out_indices = fusion_out_channels, out_indices
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.align_corners = align_corners
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.learning_to_downsample = LearningToDownsample(
            in_channels, downsample_dw_channels, global_in_channels, act_cfg=act_cfg,
            dw_act_cfg=dw_act_cfg, **common,
        )  # fmt: skip
        self.global_feature_extractor = GlobalFeatureExtractor(
            global_in_channels, global_block_channels, global_out_channels,
            strides=global_block_strides, act_cfg=act_cfg, align_corners=align_corners,
            **common,
        )  # fmt: skip
        self.feature_fusion = FeatureFusionModule(
            higher_in_channels, lower_in_channels, fusion_out_channels,
            dwconv_act_cfg=act_cfg, align_corners=align_corners, **common,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        higher = self.learning_to_downsample(x)
        lower = self.global_feature_extractor(higher)
        outs = [higher, lower, self.feature_fusion(higher, lower)]
        return tuple(outs[i] for i in self.out_indices)
