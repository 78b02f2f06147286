"""RegNet backbone (`Designing Network Design Spaces <https://arxiv.org/abs/2003.13678>`__),
the RegNetX models, with MMPretrain's arguments and checkpoint keys.

A RegNet is a ResNeXt whose per-block widths follow a quantised linear rule: block ``j``
would have width ``u_j = w0 + wa * j``; it gets ``w0 * wm ** round(log(u_j / w0) / log(wm))``
rounded to a multiple of 8, and consecutive blocks of equal width form a stage. The groups
of the 3x3 convs are ``group_w`` channels wide, and each stage's width is rounded so that
its bottleneck width (``width * bot_mul``) is a multiple of the group width. The stem is
one 3x3 stride-2 conv (no max pool), every stage starts with a stride-2 block, and the
blocks are ResNeXt bottlenecks with ``expansion=1``.

Arch table (``arch``, dicts of ``w0``, ``wa``, ``wm``, ``group_w``, ``depth``,
``bot_mul``): ``regnetx_400mf``, ``regnetx_800mf``, ``regnetx_1.6gf``, ``regnetx_3.2gf``,
``regnetx_4.0gf``, ``regnetx_6.4gf``, ``regnetx_8.0gf``, ``regnetx_12gf``.

Keys: ResNet's: ``conv1``/``bn1`` (the stem), ``layer{i}.{j}.conv{1,2,3}`` / ``bn{1,2,3}``,
``layer{i}.0.downsample.{0,1}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vistra.models.backbones.resnet import ResLayer, ResNet, _check_stages
from vistra.models.backbones.resnext import Bottleneck
from vistra.models.base import BaseModule
from vistra.models.layers import build_conv_layer, build_norm_layer
from vistra.models.layers.key_remap import install_remap_hook
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

_ARCH_KEYS = ("w0", "wa", "wm", "group_w", "depth", "bot_mul")


def block_widths(w0: int, wa: float, wm: float, depth: int, divisor: int = 8) -> list[int]:
    """The quantised linear widths of the ``depth`` blocks (the paper's equations 2-4)."""
    if wa < 0 or w0 <= 0 or wm <= 1 or w0 % divisor:
        raise ValueError(
            f"RegNet arch needs wa >= 0, w0 > 0 and a multiple of {divisor}, wm > 1; got "
            f"w0={w0}, wa={wa}, wm={wm}"
        )
    continuous = np.arange(depth) * wa + w0
    steps = np.round(np.log(continuous / w0) / np.log(wm))
    widths = np.round(w0 * np.power(wm, steps) / divisor) * divisor
    return widths.astype(int).tolist()


def split_stages(widths: list[int]) -> tuple[list[int], list[int]]:
    """(width, number of blocks) of each run of equal consecutive block widths."""
    stage_widths: list[int] = []
    stage_blocks: list[int] = []
    for width in widths:
        if stage_widths and stage_widths[-1] == width:
            stage_blocks[-1] += 1
        else:
            stage_widths.append(width)
            stage_blocks.append(1)
    return stage_widths, stage_blocks


def match_groups(
    widths: list[int], bot_muls: list[float], group_widths: list[int]
) -> tuple[list[int], list[int]]:
    """Stage widths whose bottleneck width is a multiple of the group width (which is no
    wider than the bottleneck), and those group widths."""
    bottlenecks = [int(w * b) for w, b in zip(widths, bot_muls)]
    group_widths = [min(g, w) for g, w in zip(group_widths, bottlenecks)]
    bottlenecks = [int(round(w / g) * g) for w, g in zip(bottlenecks, group_widths)]
    return [int(w / b) for w, b in zip(bottlenecks, bot_muls)], group_widths


@MODELS.register_module()
class RegNet(ResNet):
    """RegNet backbone (`paper <https://arxiv.org/abs/2003.13678>`__).

    ``arch`` is a name of the arch table or a dict with its keys; the number of stages
    follows from it (4 for every preset), and ``strides``/``dilations`` need one value per
    stage. ``out_indices``, ``frozen_stages`` (the stem and the first ``k`` stages),
    ``norm_eval``, ``with_cp`` and ``zero_init_residual`` are ResNet's; ``stem_channels``
    is the width of the stem conv. ``base_channels`` is accepted for MMPretrain's
    signature and unused (the widths come from ``arch``), and ``deep_stem`` must be False.
    """

    arch_settings = {
        "regnetx_400mf": dict(w0=24, wa=24.48, wm=2.54, group_w=16, depth=22, bot_mul=1.0),
        "regnetx_800mf": dict(w0=56, wa=35.73, wm=2.28, group_w=16, depth=16, bot_mul=1.0),
        "regnetx_1.6gf": dict(w0=80, wa=34.01, wm=2.25, group_w=24, depth=18, bot_mul=1.0),
        "regnetx_3.2gf": dict(w0=88, wa=26.31, wm=2.25, group_w=48, depth=25, bot_mul=1.0),
        "regnetx_4.0gf": dict(w0=96, wa=38.65, wm=2.43, group_w=40, depth=23, bot_mul=1.0),
        "regnetx_6.4gf": dict(w0=184, wa=60.83, wm=2.07, group_w=56, depth=17, bot_mul=1.0),
        "regnetx_8.0gf": dict(w0=80, wa=49.56, wm=2.88, group_w=120, depth=23, bot_mul=1.0),
        "regnetx_12gf": dict(w0=168, wa=73.36, wm=2.37, group_w=112, depth=19, bot_mul=1.0),
    }

    def __init__(
        self,
        arch: str | Mapping[str, Any],
        in_channels: int = 3,
        stem_channels: int = 32,
        base_channels: int = 32,
        strides: Sequence[int] = (2, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (3,),
        style: str = "pytorch",
        deep_stem: bool = False,
        avg_down: bool = False,
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        norm_eval: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        # ResNet's constructor builds a fixed-depth network: skip it, keep its methods
        BaseModule.__init__(self, init_cfg)
        if deep_stem:
            raise NotImplementedError("RegNet has no deep stem: deep_stem must be False")
        self.arch = pick_arch(arch, self.arch_settings, "RegNet", _ARCH_KEYS)
        widths, stage_blocks = split_stages(
            block_widths(self.arch["w0"], self.arch["wa"], self.arch["wm"], self.arch["depth"])
        )
        num_stages = len(stage_blocks)
        bot_muls = [self.arch["bot_mul"]] * num_stages
        widths, group_widths = match_groups(widths, bot_muls, [self.arch["group_w"]] * num_stages)
        _check_stages(num_stages, strides, dilations, out_indices, frozen_stages, style)
        self.stage_widths, self.group_widths, self.bottleneck_ratio = (
            widths, group_widths, bot_muls,
        )  # fmt: skip
        self.depth, self.stage_blocks = sum(stage_blocks), stage_blocks
        self.stem_channels, self.base_channels = stem_channels, base_channels
        self.num_stages, self.strides, self.dilations = num_stages, tuple(strides), tuple(dilations)
        self.out_indices = tuple(out_indices)
        self.style, self.deep_stem, self.avg_down = style, deep_stem, avg_down
        self.frozen_stages, self.conv_cfg, self.norm_cfg = frozen_stages, conv_cfg, norm_cfg
        self.norm_eval, self.with_cp = norm_eval, with_cp
        self.zero_init_residual = zero_init_residual

        self._make_stem_layer(in_channels, stem_channels)
        self.res_layers: list[str] = []
        in_ch = stem_channels
        for i, num_blocks in enumerate(stage_blocks):
            bottleneck = int(round(widths[i] * bot_muls[i]))
            layer = self.make_res_layer(
                block=Bottleneck, num_blocks=num_blocks, in_channels=in_ch,
                out_channels=widths[i], expansion=1, stride=self.strides[i],
                dilation=self.dilations[i], style=style, avg_down=avg_down, with_cp=with_cp,
                conv_cfg=conv_cfg, norm_cfg=norm_cfg, base_channels=widths[i],
                groups=bottleneck // group_widths[i], width_per_group=group_widths[i],
            )  # fmt: skip
            in_ch = widths[i]
            self.add_module(f"layer{i + 1}", layer)
            self.res_layers.append(f"layer{i + 1}")
        self.feat_dim = widths[-1]
        self._freeze_stages()
        install_remap_hook(self)

    def make_res_layer(self, **kwargs) -> ResLayer:
        return ResLayer(**kwargs)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        self.conv1 = build_conv_layer(
            self.conv_cfg, in_channels, stem_channels, 3, stride=2, padding=1, bias=False
        )
        self.norm1_name, norm1 = build_norm_layer(self.norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self._stem(x)  # no max pool: the first stage strides instead
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
