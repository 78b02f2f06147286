"""Inverted residual blocks of MobileNetV2 and MobileNetV3, as MMSegmentation builds them.

- ``InvertedResidual`` (MobileNetV2): keys ``conv.{0,1,2}`` (expand 1x1, depthwise 3x3,
  linear 1x1 ConvModules; without expansion ``conv.{0,1}``).
- ``InvertedResidualV3`` (MobileNetV3): keys ``expand_conv`` (only ``with_expand_conv``),
  ``depthwise_conv``, ``se.conv1``/``se.conv2`` (only with ``se_cfg``), ``linear_conv``.

Also ``Conv2dAdaptivePadding`` (MMCV's TensorFlow-"SAME" conv, registered under that name),
which MobileNetV3 uses for its strided convs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.se_layer import SELayer
from vistra.registry import MODELS


@MODELS.register_module()
class Conv2dAdaptivePadding(nn.Conv2d):
    """``Conv2d`` that pads its input like TensorFlow's ``'SAME'``: the output is
    ``ceil(input / stride)``, and odd padding puts the extra pixel at the bottom/right.
    The ``padding`` argument is ignored (MMCV's semantics); the padding is worked out from
    each input's size, the kernel, stride and dilation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(
                f"Conv2dAdaptivePadding pads with zeros only, got padding_mode={padding_mode!r}"
            )
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(
            x.shape[-2:], self.weight.shape[-2:], self.stride, self.dilation, strict=True
        ):
            out = math.ceil(size / s)
            pads.append(max((out - 1) * s + (k - 1) * d + 1 - size, 0))
        pad_h, pad_w = pads
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


def _check_stride(stride: int, where: str) -> None:
    if stride not in (1, 2):
        raise ValueError(f"{where} stride must be 1 or 2, got {stride!r}")


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion (skipped when ``expand_ratio == 1``), depthwise 3x3
    (``stride``, ``dilation``), linear 1x1 projection; identity shortcut when the stride is
    1 and the channel count is kept. Extra keyword arguments go to every ConvModule."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: float,
        dilation: int = 1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU6"),  # noqa: B006
        with_cp: bool = False,
        **kwargs,
    ) -> None:
        super().__init__()
        _check_stride(stride, "InvertedResidual")
        self.stride, self.with_cp = stride, with_cp
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = int(round(in_channels * expand_ratio))
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, **kwargs)
        layers = []
        if expand_ratio != 1:
            layers.append(ConvModule(in_channels, hidden, 1, act_cfg=act_cfg, **common))
        layers += [
            ConvModule(
                hidden, hidden, 3, stride=stride, padding=dilation, dilation=dilation,
                groups=hidden, act_cfg=act_cfg, **common,
            ),
            ConvModule(hidden, out_channels, 1, act_cfg=None, **common),
        ]  # fmt: skip
        self.conv = nn.Sequential(*layers)

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


class InvertedResidualV3(nn.Module):
    """MobileNetV3 block: optional 1x1 expansion to ``mid_channels``, depthwise
    ``kernel_size`` conv (TF-"SAME" padded when strided), optional squeeze-excitation
    (``se_cfg`` holds ``SELayer``'s arguments), linear 1x1 projection; identity shortcut
    when the stride is 1 and the channel count is kept."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        se_cfg: dict | None = None,
        with_expand_conv: bool = True,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        _check_stride(stride, "InvertedResidualV3")
        if se_cfg is not None and not isinstance(se_cfg, dict):
            raise TypeError(f"InvertedResidualV3 se_cfg must be a dict or None, got {se_cfg!r}")
        if not with_expand_conv and mid_channels != in_channels:
            raise ValueError(
                "InvertedResidualV3 with_expand_conv=False needs mid_channels == in_channels, "
                f"got {mid_channels} and {in_channels}"
            )
        self.with_res_shortcut = stride == 1 and in_channels == out_channels
        self.with_cp, self.with_se = with_cp, se_cfg is not None
        self.with_expand_conv = with_expand_conv
        if with_expand_conv:
            self.expand_conv = ConvModule(
                in_channels, mid_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                act_cfg=act_cfg,
            )  # fmt: skip
        self.depthwise_conv = ConvModule(
            mid_channels, mid_channels, kernel_size, stride=stride, padding=kernel_size // 2,
            groups=mid_channels,
            conv_cfg=dict(type="Conv2dAdaptivePadding") if stride == 2 else conv_cfg,
            norm_cfg=norm_cfg, act_cfg=act_cfg,
        )  # fmt: skip
        if self.with_se:
            self.se = SELayer(**se_cfg)
        self.linear_conv = ConvModule(
            mid_channels, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None
        )

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand_conv(x) if self.with_expand_conv else x
        out = self.depthwise_conv(out)
        if self.with_se:
            out = self.se(out)
        out = self.linear_conv(out)
        return x + out if self.with_res_shortcut else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)
