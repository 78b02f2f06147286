"""MMSegmentation's ``ResNeSt`` (`ResNeSt: Split-Attention Networks
<https://arxiv.org/abs/2004.08955>`_), registry scope ``mmseg``.

A ResNetV1d (deep stem, average-pooled shortcuts; ``resnet_mmseg.py``) whose bottleneck
3x3 conv is a split-attention conv: ``radix`` grouped branches, pooled and weighted by a
softmax over the branches (a sigmoid when ``radix=1``). With ``avg_down_stride`` a strided
block runs its 3x3 conv at stride 1 and downsamples after it with a 3x3 average pool
(``avd_layer``, no parameters).

Arch table (``depth``): 50, 101, 152, 200.

Keys (per block, besides the ResNet's stem, ``downsample`` and ``conv1``/``bn1``,
``conv3``/``bn3``): ``conv2.conv`` (grouped, ``radix * width`` outputs), ``conv2.bn0``,
``conv2.fc1`` and ``conv2.fc2`` (1x1 convs with bias), ``conv2.bn1``; there is no ``bn2``.

MMPretrain's ResNeSt (the classification zoo's plain ``ResNeSt``) reuses this file's split-attention block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.resnet import Bottleneck as _Bottleneck
from vistra.models.backbones.resnet import ResLayer
from vistra.models.backbones.resnet_mmseg import SegResNetV1d
from vistra.models.layers import build_conv_layer, build_norm_layer
from vistra.registry import MODELS


class RSoftmax(nn.Module):
    """Softmax across the ``radix`` branches of each group (sigmoid for one branch)."""

    def __init__(self, radix: int, groups: int) -> None:
        super().__init__()
        self.radix, self.groups = radix, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.size(0)
        if self.radix == 1:
            return torch.sigmoid(x)
        # (N, groups * radix * c) laid out group-major -> softmax over the radix axis,
        # flattened radix-major (the layout the branches are split in)
        x = x.view(n, self.groups, self.radix, -1).transpose(1, 2)
        return F.softmax(x, dim=1).reshape(n, -1)


class SplitAttentionConv2d(nn.Module):
    """A ``groups * radix``-grouped conv giving ``radix`` branches of ``channels`` each; their
    sum is pooled, squeezed to ``max(in_channels * radix // reduction_factor, 32)``
    channels (``fc1``, ``bn1``, ReLU) and expanded to per-branch attention (``fc2``,
    :class:`RSoftmax`); the output is the attention-weighted sum of the branches."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        radix: int = 2,
        reduction_factor: int = 4,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        dcn: dict | None = None,
    ) -> None:
        super().__init__()
        if dcn is not None:
            raise NotImplementedError(
                "SplitAttentionConv2d dcn (deformable convolution) needs MMCV's compiled ops, "
                "which vistra does not use"
            )
        if radix < 1:
            raise ValueError(f"ResNeSt radix must be >= 1, got {radix}")
        inter_channels = max(in_channels * radix // reduction_factor, 32)
        self.radix, self.groups, self.channels = radix, groups, channels
        self.conv = build_conv_layer(
            conv_cfg, in_channels, channels * radix, kernel_size, stride=stride,
            padding=padding, dilation=dilation, groups=groups * radix, bias=False,
        )  # fmt: skip
        self.norm0_name, norm0 = build_norm_layer(norm_cfg, channels * radix, postfix=0)
        self.add_module(self.norm0_name, norm0)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = build_conv_layer(None, channels, inter_channels, 1, groups=groups)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, inter_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.fc2 = build_conv_layer(None, inter_channels, channels * radix, 1, groups=groups)
        self.rsoftmax = RSoftmax(radix, groups)

    @property
    def norm0(self) -> nn.Module:
        return getattr(self, self.norm0_name)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.norm0(self.conv(x)))
        n = x.size(0)
        if self.radix > 1:
            splits = x.view(n, self.radix, -1, *x.shape[2:])
            gap = splits.sum(dim=1)
        else:
            gap = x
        gap = self.relu(self.norm1(self.fc1(F.adaptive_avg_pool2d(gap, 1))))
        atten = self.rsoftmax(self.fc2(gap)).view(n, -1, 1, 1)
        if self.radix > 1:
            atten = atten.view(n, self.radix, -1, *atten.shape[2:])
            out = (atten * splits).sum(dim=1)
        else:
            out = atten * x
        return out.contiguous()


class Bottleneck(_Bottleneck):
    """ResNeSt bottleneck: ResNet's, with a :class:`SplitAttentionConv2d` of width
    ``planes`` (``groups=1``) or ``floor(planes * base_width / base_channels) * groups`` as
    its 3x3 conv, optionally strided by an average pool (``avg_down_stride``)."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 1,
        base_width: int = 4,
        base_channels: int = 64,
        radix: int = 2,
        reduction_factor: int = 4,
        avg_down_stride: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        norm_cfg, conv_cfg = kwargs.get("norm_cfg", dict(type="BN")), kwargs.get("conv_cfg")
        planes = self.mid_channels
        width = planes if groups == 1 else math.floor(planes * base_width / base_channels) * groups
        self.avg_down_stride = avg_down_stride and self.conv2_stride > 1
        # Rebuild conv1/bn1 and conv3/bn3 for ``width`` (same names, same places), swap the
        # 3x3 conv for the split-attention one and drop its norm (it has its own).
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, width, postfix=1)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, out_channels, postfix=3)
        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, width, 1, stride=self.conv1_stride, bias=False
        )
        self.add_module(self.norm1_name, norm1)
        self.conv2 = SplitAttentionConv2d(
            width, width, kernel_size=3,
            stride=1 if self.avg_down_stride else self.conv2_stride,
            padding=self.dilation, dilation=self.dilation, groups=groups, radix=radix,
            reduction_factor=reduction_factor, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
        )  # fmt: skip
        delattr(self, self.norm2_name)
        if self.avg_down_stride:
            self.avd_layer = nn.AvgPool2d(3, self.conv2_stride, padding=1)
        self.conv3 = build_conv_layer(conv_cfg, width, out_channels, 1, bias=False)
        self.add_module(self.norm3_name, norm3)

    @property
    def norm2(self) -> nn.Module:
        raise AttributeError("a ResNeSt bottleneck has no norm2 (conv2 holds its own norms)")

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.conv2(out)
        if self.avg_down_stride:
            out = self.avd_layer(out)
        out = self.norm3(self.conv3(out))
        return self._finish(out, x)


@MODELS.register_module(name="ResNeSt", scope="mmseg")
class SegResNeSt(SegResNetV1d):
    """MMSegmentation's ``ResNeSt``: ``groups``/``base_width`` set the split-attention
    width, ``radix`` the branches, ``reduction_factor`` the attention squeeze,
    ``avg_down_stride`` strides by average pooling; the rest are ResNetV1d's arguments."""

    arch_settings = {
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
        200: (Bottleneck, (3, 24, 36, 3)),
    }

    def __init__(
        self,
        groups: int = 1,
        base_width: int = 4,
        radix: int = 2,
        reduction_factor: int = 4,
        avg_down_stride: bool = True,
        **kwargs,
    ) -> None:
        if not isinstance(radix, int) or radix < 1:
            raise ValueError(f"ResNeSt radix must be a positive int, got {radix!r}")
        if not isinstance(reduction_factor, int) or reduction_factor < 1:
            raise ValueError(
                f"ResNeSt reduction_factor must be a positive int, got {reduction_factor!r}"
            )
        # read by make_res_layer during the base constructor (plain attributes, allowed
        # before nn.Module.__init__)
        self.groups, self.base_width = groups, base_width
        self.radix, self.reduction_factor = radix, reduction_factor
        self.avg_down_stride = avg_down_stride
        super().__init__(**kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        return ResLayer(
            groups=self.groups,
            base_width=self.base_width,
            base_channels=self.base_channels,
            radix=self.radix,
            reduction_factor=self.reduction_factor,
            avg_down_stride=self.avg_down_stride,
            **kwargs,
        )
