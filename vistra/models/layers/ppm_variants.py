"""Layers shared by DDRNet and PIDNet (MMSegmentation's ``mmseg.models.utils.ppm`` and
``basic_block``).

- ``DAPPM``: Deep Aggregation Pyramid Pooling Module (`DDRNet
  <https://arxiv.org/abs/2101.06085>`_). Keys ``scales.{i}`` (``scales.0`` a ConvModule,
  the pooled branches ``scales.{i}.1``), ``processes.{i}``, ``compression``, ``shortcut``.
- ``PAPPM``: Parallel Aggregation PPM (`PIDNet <https://arxiv.org/abs/2206.02066>`_); as
  DAPPM, but ``processes`` is one grouped ConvModule.
- ``BasicBlock`` / ``Bottleneck``: the residual blocks of those two networks, keyed
  ``conv1``/``conv2`` (``conv3``) ConvModules and ``downsample``; not torchvision's, whose
  norms are separate modules.

Their ConvModules run norm -> act -> conv (``order=('norm', 'act', 'conv')``, no bias), so
the norm of each holds the *input* channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.activation import build_activation_layer
from vistra.models.layers.conv_module import ConvModule

_PRE_ACT = dict(order=("norm", "act", "conv"), bias=False)


class DAPPM(BaseModule):
    """``num_scales`` branches: a 1x1 conv, ``num_scales - 2`` average pools
    (``kernel_sizes``/``strides``/``paddings``) and a global pool, each then a 1x1 conv;
    every pooled branch is upsampled, added to the previous branch's output and refined by
    a 3x3 conv (``processes``). The concatenation is compressed and added to a 1x1
    ``shortcut`` of the input."""

    def __init__(
        self,
        in_channels: int,
        branch_channels: int,
        out_channels: int,
        num_scales: int,
        kernel_sizes: Sequence[int] = (5, 9, 17),
        strides: Sequence[int] = (2, 4, 8),
        paddings: Sequence[int] = (2, 4, 8),
        norm_cfg: dict | None = dict(type="BN", momentum=0.1),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        conv_cfg: dict = _PRE_ACT,  # noqa: B006 (ConvModule keyword arguments, as upstream)
        upsample_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        if num_scales < 2:
            raise ValueError(f"num_scales must be >= 2, got {num_scales}")
        pooled = num_scales - 2
        for name, seq in (
            ("kernel_sizes", kernel_sizes),
            ("strides", strides),
            ("paddings", paddings),
        ):
            if len(seq) < pooled:
                raise ValueError(
                    f"{name}={list(seq)!r} needs at least num_scales - 2 = {pooled} entries"
                )
        self.num_scales = num_scales
        self.unsample_mode = upsample_mode  # upstream's attribute name
        self.in_channels, self.branch_channels = in_channels, branch_channels
        self.out_channels = out_channels
        self.norm_cfg, self.act_cfg, self.conv_cfg = norm_cfg, act_cfg, dict(conv_cfg)

        def conv(cin: int, cout: int, k: int = 1, **kw) -> ConvModule:
            return ConvModule(
                cin, cout, k, norm_cfg=norm_cfg, act_cfg=act_cfg, **kw, **self.conv_cfg
            )

        self.scales = nn.ModuleList([conv(in_channels, branch_channels)])
        for i in range(pooled):
            pool = nn.AvgPool2d(kernel_size=kernel_sizes[i], stride=strides[i], padding=paddings[i])
            self.scales.append(nn.Sequential(pool, conv(in_channels, branch_channels)))
        self.scales.append(
            nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), conv(in_channels, branch_channels))
        )
        self.processes: nn.Module = nn.ModuleList(
            conv(branch_channels, branch_channels, 3, padding=1) for _ in range(num_scales - 1)
        )
        self.compression = conv(branch_channels * num_scales, out_channels)
        self.shortcut = conv(in_channels, out_channels)

    def _up(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return F.interpolate(x, size=size, mode=self.unsample_mode)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        feats = [self.scales[0](inputs)]
        for i in range(1, self.num_scales):
            up = self._up(self.scales[i](inputs), inputs.shape[2:])
            feats.append(self.processes[i - 1](up + feats[i - 1]))  # type: ignore[index]
        return self.compression(torch.cat(feats, dim=1)) + self.shortcut(inputs)


class PAPPM(DAPPM):
    """DAPPM whose pooled branches all add the first branch and are refined together by
    one grouped 3x3 conv (``processes``, ``groups=num_scales - 1``)."""

    def __init__(
        self,
        in_channels: int,
        branch_channels: int,
        out_channels: int,
        num_scales: int,
        kernel_sizes: Sequence[int] = (5, 9, 17),
        strides: Sequence[int] = (2, 4, 8),
        paddings: Sequence[int] = (2, 4, 8),
        norm_cfg: dict | None = dict(type="BN", momentum=0.1),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        conv_cfg: dict = _PRE_ACT,  # noqa: B006
        upsample_mode: str = "bilinear",
    ) -> None:
        super().__init__(
            in_channels,
            branch_channels,
            out_channels,
            num_scales,
            kernel_sizes,
            strides,
            paddings,
            norm_cfg,
            act_cfg,
            conv_cfg,
            upsample_mode,
        )
        width = branch_channels * (num_scales - 1)
        self.processes = ConvModule(
            width,
            width,
            3,
            padding=1,
            groups=num_scales - 1,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            **self.conv_cfg,
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x0 = self.scales[0](inputs)
        feats = [
            F.interpolate(
                self.scales[i](inputs),
                size=inputs.shape[2:],
                mode=self.unsample_mode,
                align_corners=False,
            )
            + x0
            for i in range(1, self.num_scales)
        ]
        out = self.processes(torch.cat(feats, dim=1))
        return self.compression(torch.cat([x0, out], dim=1)) + self.shortcut(inputs)


class BasicBlock(BaseModule):
    """Two 3x3 ConvModules (the second without activation) plus the identity or
    ``downsample``; ``act_cfg_out`` (``None``: none) after the sum, as ``act``."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        act_cfg_out: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.conv1 = ConvModule(
            in_channels, channels, 3, stride=stride, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg
        )
        self.conv2 = ConvModule(channels, channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=None)
        self.downsample = downsample
        if act_cfg_out:
            self.act = build_activation_layer(act_cfg_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        out = out + (self.downsample(x) if self.downsample is not None else x)
        return self.act(out) if hasattr(self, "act") else out


class Bottleneck(BaseModule):
    """1x1, 3x3 (``stride``), 1x1 to ``channels * 2`` ConvModules plus the identity or
    ``downsample``; ``act_cfg_out`` (default none) after the sum."""

    expansion = 2

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        act_cfg_out: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.conv1 = ConvModule(in_channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv2 = ConvModule(
            channels, channels, 3, stride, 1, norm_cfg=norm_cfg, act_cfg=act_cfg
        )
        self.conv3 = ConvModule(
            channels, channels * self.expansion, 1, norm_cfg=norm_cfg, act_cfg=None
        )
        if act_cfg_out:
            self.act = build_activation_layer(act_cfg_out)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        out = out + (self.downsample(x) if self.downsample is not None else x)
        return self.act(out) if hasattr(self, "act") else out
