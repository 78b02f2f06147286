"""Res2Net backbone (`Res2Net: A New Multi-scale Backbone Architecture
<https://arxiv.org/abs/1904.01169>`__), with MMPretrain's arguments and checkpoint keys.

A ResNet whose bottleneck 3x3 conv is replaced by a hierarchy of ``scales - 1`` small 3x3
convs: the output of ``conv1`` (``scales * width`` channels, ``width`` =
``floor(out_channels / 4 * base_width / base_channels)``) is split into ``scales`` groups;
each group but the last goes through its own conv (with BN and ReLU) after the previous
group's output is added to it, so later groups see ever larger receptive fields, and the
last group passes unchanged. The first block of each stage ("stage" block) adds nothing
between groups and average-pools the last group with the block's stride instead.

Defaults differ from ResNet's as MMPretrain's do: ``deep_stem=True`` and ``avg_down=True``
(the "v1b" Res2Net; the zoo configs set both False), ``init_cfg=None``. With ``avg_down``
every shortcut starts with an average pool, an identity one (kernel 1) in stride-1 stages.

Arch table (``depth``): 50 (3, 4, 6, 3), 101 (3, 4, 23, 3), 152 (3, 8, 36, 3) bottlenecks.

Keys per block: ``conv1``/``bn1``, ``convs.{k}`` / ``bns.{k}`` for ``k < scales - 1``,
``conv3``/``bn3``, ``downsample.{0,1}`` (``.{1,2}`` after the pool with ``avg_down``);
there is no ``conv2``/``bn2``. The stem is ResNet's (``conv1``/``bn1``, or
``stem.{0,1,2}.conv`` / ``.bn`` with ``deep_stem``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from vistra.models.backbones.resnet import Bottleneck, ResLayer, ResNet
from vistra.models.backbones.resnext import check_depth
from vistra.models.layers import build_conv_layer, build_norm_layer
from vistra.registry import MODELS

_STAGE_TYPES = ("normal", "stage")


class Bottle2neck(Bottleneck):
    """The Res2Net bottleneck (see the module docstring); ``stage_type`` is ``'stage'`` for
    the first block of a stage, ``'normal'`` for the others."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scales: int = 4,
        base_width: int = 26,
        base_channels: int = 64,
        stage_type: str = "normal",
        expansion: int = 4,
        **kwargs,
    ) -> None:
        if not isinstance(scales, int) or isinstance(scales, bool) or scales < 2:
            raise ValueError(
                f"Res2Net scales must be an int >= 2 (one scale is a plain ResNet), got {scales!r}"
            )
        if stage_type not in _STAGE_TYPES:
            raise ValueError(
                f"Res2Net stage_type must be one of {_STAGE_TYPES}, got {stage_type!r}"
            )
        # read by _make_conv2 during the base constructor (plain attributes may be set before
        # nn.Module.__init__)
        self.scales, self.stage_type = scales, stage_type
        self.width = math.floor(out_channels // expansion * (base_width / base_channels))
        super().__init__(
            in_channels, out_channels, expansion=expansion, mid_channels=self.width * scales,
            **kwargs,
        )  # fmt: skip

    def _make_conv2(self) -> None:
        # the hierarchy of small convs takes the place of conv2/bn2
        if self.stage_type == "stage":
            self.pool = nn.AvgPool2d(kernel_size=3, stride=self.conv2_stride, padding=1)
        self.convs = nn.ModuleList(
            build_conv_layer(
                self.conv_cfg,
                self.width,
                self.width,
                3,
                stride=self.conv2_stride,
                padding=self.dilation,
                dilation=self.dilation,
                bias=False,
            )  # fmt: skip
            for _ in range(self.scales - 1)
        )
        self.bns = nn.ModuleList(
            build_norm_layer(self.norm_cfg, self.width, postfix=k + 1)[1]
            for k in range(self.scales - 1)
        )

    @property
    def norm2(self) -> nn.Module:
        raise AttributeError("a Res2Net bottleneck has no norm2 (its middle norms are 'bns')")

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        groups = torch.split(out, self.width, dim=1)
        outs = []
        sp = groups[0]
        for k, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if k > 0:
                # a stage block keeps its groups apart (they are strided separately)
                sp = groups[k] if self.stage_type == "stage" else sp + groups[k]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        last = groups[-1]
        outs.append(self.pool(last) if self.stage_type == "stage" else last)
        out = self.norm3(self.conv3(torch.cat(outs, dim=1)))
        return self._finish(out, x)


class Res2Layer(ResLayer):
    """A stage of Res2Net blocks: ResNet's, with the first block a ``'stage'`` block."""

    first_block_kwargs: Mapping[str, Any] = MappingProxyType({"stage_type": "stage"})


@MODELS.register_module()
class Res2Net(ResNet):
    """Res2Net backbone (`paper <https://arxiv.org/abs/1904.01169>`__).

    ``scales`` is the number of groups a block's width is split into, ``base_width`` the
    width of one group in the first stage (per ``base_channels``); every other argument is
    ResNet's, with MMPretrain's Res2Net defaults ``deep_stem=True``, ``avg_down=True`` and
    ``init_cfg=None``.
    """

    # Res2Net pools in every shortcut with avg_down, stride-1 ones included (an identity
    # pool that shifts the conv and norm keys to downsample.1/2)
    pool_every_shortcut = True

    arch_settings = {
        50: (Bottle2neck, (3, 4, 6, 3)),
        101: (Bottle2neck, (3, 4, 23, 3)),
        152: (Bottle2neck, (3, 8, 36, 3)),
    }

    def __init__(
        self,
        depth: int,
        scales: int = 4,
        base_width: int = 26,
        style: str = "pytorch",
        deep_stem: bool = True,
        avg_down: bool = True,
        init_cfg: dict | list[dict] | None = None,
        **kwargs,
    ) -> None:
        check_depth("Res2Net", depth, self.arch_settings)
        if not isinstance(scales, int) or isinstance(scales, bool) or scales < 2:
            raise ValueError(
                f"Res2Net scales must be an int >= 2 (one scale is a plain ResNet), got {scales!r}"
            )
        if not isinstance(base_width, int) or isinstance(base_width, bool) or base_width < 1:
            raise ValueError(f"Res2Net base_width must be a positive int, got {base_width!r}")
        # read by make_res_layer during the base constructor
        self.scales, self.base_width = scales, base_width
        super().__init__(
            depth=depth, style=style, deep_stem=deep_stem, avg_down=avg_down,
            init_cfg=init_cfg, **kwargs,
        )  # fmt: skip

    def make_res_layer(self, **kwargs) -> ResLayer:
        return Res2Layer(
            scales=self.scales,
            base_width=self.base_width,
            base_channels=self.base_channels,
            **kwargs,
        )
