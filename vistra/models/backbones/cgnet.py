"""``CGNet`` backbone (`A Light-weight Context Guided Network for Semantic Segmentation
<https://arxiv.org/abs/1811.08201>`_), MMSegmentation 1.x.

Keys: ``stem.{0,1,2}.conv``/``.bn``/``.activate.weight`` (PReLU activations carry weights),
``norm_prelu_{0,1,2}.0`` (norm) and ``.1.weight`` (PReLU), ``level1.{i}``/``level2.{i}``
(``ContextGuidedBlock``: ``conv1x1.*``, ``f_loc``, ``f_sur``, ``bn``, ``activate``,
``bottleneck`` in the first, downsampling block of a level, ``f_glo.fc.{0,2}``). The input
injections are parameter-free average pools.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vistra.models.backbones.mobilenet_v2_mmseg import set_norm_eval
from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, build_conv_layer, build_norm_layer
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer=["Conv2d", "Linear"]),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
    dict(type="Constant", val=0, layer="PReLU"),
]


def _act_for(act_cfg: dict | None, channels: int) -> dict | None:
    """``act_cfg`` with a PReLU's ``num_parameters`` set to ``channels`` (a copy; upstream
    writes it into the caller's dict)."""
    if act_cfg is None or act_cfg.get("type") != "PReLU":
        return act_cfg
    return {**act_cfg, "num_parameters": channels}


def _run(fn, x: torch.Tensor, with_cp: bool) -> torch.Tensor:
    if with_cp and x.requires_grad:
        return checkpoint(fn, x, use_reentrant=False)
    return fn(x)


class GlobalContextExtractor(nn.Module):
    """Channel attention from the globally pooled feature (two linear layers, ReLU then
    sigmoid) that rescales the feature."""

    def __init__(self, channel: int, reduction: int = 16, with_cp: bool = False) -> None:
        super().__init__()
        if not 1 <= reduction <= channel:
            raise ValueError(
                f"GlobalContextExtractor reduction={reduction} must be in 1..channel={channel}"
            )
        self.channel, self.reduction, self.with_cp = channel, reduction, with_cp
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel),
            nn.Sigmoid(),
        )

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(n, c)).view(n, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self._inner_forward, x, self.with_cp)


class ContextGuidedBlock(nn.Module):
    """A 1x1 (or, downsampling, a strided 3x3) ConvModule, then a local depthwise 3x3
    and a dilated "surrounding" depthwise 3x3 side by side, concatenated, normed and
    PReLU'd, (downsampling: a 1x1 ``bottleneck``), reweighted by the global context, with
    a residual connection unless downsampling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilation: int = 2,
        reduction: int = 16,
        skip_connect: bool = True,
        downsample: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="PReLU"),  # noqa: B006
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        self.with_cp, self.downsample = with_cp, downsample
        channels = out_channels if downsample else out_channels // 2
        kernel_size, stride = (3, 2) if downsample else (1, 1)
        self.conv1x1 = ConvModule(
            in_channels, channels, kernel_size, stride, (kernel_size - 1) // 2,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=_act_for(act_cfg, channels),
        )  # fmt: skip
        self.f_loc = build_conv_layer(
            conv_cfg, channels, channels, kernel_size=3, padding=1, groups=channels, bias=False
        )
        self.f_sur = build_conv_layer(
            conv_cfg, channels, channels, kernel_size=3, padding=dilation, groups=channels,
            dilation=dilation, bias=False,
        )  # fmt: skip
        self.bn = build_norm_layer(norm_cfg, 2 * channels)[1]
        self.activate = nn.PReLU(2 * channels)  # always PReLU, whatever act_cfg says
        if downsample:
            self.bottleneck = build_conv_layer(
                conv_cfg, 2 * channels, out_channels, kernel_size=1, bias=False
            )
        self.skip_connect = skip_connect and not downsample
        self.f_glo = GlobalContextExtractor(out_channels, reduction, with_cp)

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x)
        joint = self.activate(self.bn(torch.cat([self.f_loc(out), self.f_sur(out)], dim=1)))
        if self.downsample:
            joint = self.bottleneck(joint)
        out = self.f_glo(joint)
        return x + out if self.skip_connect else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self._inner_forward, x, self.with_cp)


class InputInjection(nn.Module):
    """The image average-pooled down ``num_downsampling`` times (3x3, stride 2)."""

    def __init__(self, num_downsampling: int) -> None:
        super().__init__()
        self.pool = nn.ModuleList(
            nn.AvgPool2d(3, stride=2, padding=1) for _ in range(num_downsampling)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for pool in self.pool:
            x = pool(x)
        return x


def _check_tuple(name: str, value: object, length: int) -> None:
    if not isinstance(value, tuple) or len(value) != length:
        raise ValueError(f"CGNet {name} must be a tuple of {length} ints, got {value!r}")


@MODELS.register_module()
class CGNet(BaseModule):
    """Three-conv stem (1/2), level 1 of ``num_blocks[0]`` CG blocks (1/4) and level 2 of
    ``num_blocks[1]`` (1/8); each level's output is concatenated with the first block's
    output (and a downsampled copy of the image) and PReLU-normed. Returns the three
    level outputs (``num_channels[0] + in_channels``, ``2 * num_channels[1] +
    in_channels``, ``2 * num_channels[2]`` channels)."""

    def __init__(
        self,
        in_channels: int = 3,
        num_channels: Sequence[int] = (32, 64, 128),
        num_blocks: Sequence[int] = (3, 21),
        dilations: Sequence[int] = (2, 4),
        reductions: Sequence[int] = (8, 16),
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="PReLU"),  # noqa: B006
        norm_eval: bool = False,
        with_cp: bool = False,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if init_cfg and pretrained:
            raise ValueError("CGNet: init_cfg and pretrained cannot be set at the same time")
        if pretrained is not None and not isinstance(pretrained, str):
            raise TypeError(f"CGNet: pretrained must be a str or None, got {pretrained!r}")
        if pretrained is not None:
            warnings.warn(
                "CGNet(pretrained=...) is deprecated, use "
                "init_cfg=dict(type='Pretrained', checkpoint=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(_DEFAULT_INIT if init_cfg is None else init_cfg)
        _check_tuple("num_channels", num_channels, 3)
        _check_tuple("num_blocks", num_blocks, 2)
        _check_tuple("dilations", dilations, 2)
        _check_tuple("reductions", reductions, 2)
        self.in_channels, self.num_channels, self.num_blocks = in_channels, num_channels, num_blocks
        self.dilations, self.reductions = dilations, reductions
        self.conv_cfg, self.norm_cfg = conv_cfg, norm_cfg
        self.act_cfg = _act_for(act_cfg, num_channels[0])
        self.norm_eval, self.with_cp = norm_eval, with_cp

        self.stem = nn.ModuleList(
            ConvModule(
                in_channels if i == 0 else num_channels[0], num_channels[0], 3,
                2 if i == 0 else 1, padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                act_cfg=self.act_cfg,
            )
            for i in range(3)
        )  # fmt: skip
        self.inject_2x = InputInjection(1)
        self.inject_4x = InputInjection(2)
        channels = num_channels[0] + in_channels
        self.norm_prelu_0 = self._norm_prelu(channels)
        self.level1 = self._level(channels, num_channels[1], num_blocks[0], 0)
        channels = 2 * num_channels[1] + in_channels
        self.norm_prelu_1 = self._norm_prelu(channels)
        self.level2 = self._level(channels, num_channels[2], num_blocks[1], 1)
        self.norm_prelu_2 = self._norm_prelu(2 * num_channels[2])

    def _norm_prelu(self, channels: int) -> nn.Sequential:
        return nn.Sequential(build_norm_layer(self.norm_cfg, channels)[1], nn.PReLU(channels))

    def _level(self, in_channels: int, out_channels: int, num: int, idx: int) -> nn.ModuleList:
        return nn.ModuleList(
            ContextGuidedBlock(
                in_channels if i == 0 else out_channels, out_channels, self.dilations[idx],
                self.reductions[idx], downsample=i == 0, conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg, act_cfg=self.act_cfg, with_cp=self.with_cp,
            )
            for i in range(num)
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        inp_2x, inp_4x = self.inject_2x(x), self.inject_4x(x)
        for layer in self.stem:
            x = layer(x)
        x = self.norm_prelu_0(torch.cat([x, inp_2x], dim=1))
        outs = [x]
        for i, block in enumerate(self.level1):
            x = block(x)
            if i == 0:
                down1 = x
        x = self.norm_prelu_1(torch.cat([x, down1, inp_4x], dim=1))
        outs.append(x)
        for i, block in enumerate(self.level2):
            x = block(x)
            if i == 0:
                down2 = x
        outs.append(self.norm_prelu_2(torch.cat([down2, x], dim=1)))
        return outs

    def train(self, mode: bool = True) -> CGNet:
        """Train mode, keeping BatchNorm layers in eval mode when ``norm_eval``."""
        super().train(mode)
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self
