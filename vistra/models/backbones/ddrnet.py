"""``DDRNet`` (`Deep Dual-resolution Networks for Real-time and Accurate Semantic
Segmentation of Road Scenes <https://arxiv.org/abs/2101.06085>`_), MMSegmentation 1.x.

A stem to 1/8, then two branches exchanging features twice: a spatial branch that stays
at 1/8 and a context branch that goes to 1/16, 1/32 and 1/64, ending in a DAPPM; their sum
is the output (in training also the spatial map after the first exchange, for the
auxiliary loss of ``DDRHead``).

Keys: ``stem.{0,1}`` (ConvModules), ``stem.{2,4}.{j}`` (residual blocks, ``stem.4.0`` with
a ``downsample.{0,1}`` conv and norm), ``context_branch_layers.{0,1,2}`` and
``spatial_branch_layers.{0,1,2}`` (blocks; the third of each a Bottleneck),
``compression_{1,2}``, ``down_1``, ``down_2.{0,1}``, ``spp`` (the DAPPM: ``scales``,
``processes``, ``compression``, ``shortcut``).
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, build_norm_layer
from vistra.models.layers.ppm_variants import DAPPM, BasicBlock, Bottleneck
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


@MODELS.register_module()
class DDRNet(BaseModule):
    """``channels``: the stem width (32 for DDRNet-23-slim, 64 for DDRNet-23); the spatial
    branch is ``2 * channels`` wide, the context branch ``4, 8, 16 * channels``, and the
    output ``4 * channels``. ``ppm_channels``: the DAPPM's branch width."""

    def __init__(
        self,
        in_channels: int = 3,
        channels: int = 32,
        ppm_channels: int = 128,
        align_corners: bool = False,
        norm_cfg: dict | None = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.in_channels, self.ppm_channels = in_channels, ppm_channels
        self.norm_cfg, self.act_cfg = norm_cfg, act_cfg
        self.align_corners = align_corners
        c = channels
        self.stem = self._make_stem_layer(in_channels, c, num_blocks=2)
        self.relu = nn.ReLU()
        # context branch: 1/16 (BasicBlocks), 1/32 (BasicBlocks), 1/64 (a Bottleneck)
        self.context_branch_layers = nn.ModuleList(
            self._make_layer(
                BasicBlock if i < 2 else Bottleneck,
                c * 2 ** (i + 1),
                c * 8 if i > 0 else c * 4,
                2 if i < 2 else 1,
                stride=2,
            )
            for i in range(3)
        )
        plain = dict(norm_cfg=norm_cfg, act_cfg=None)
        self.compression_1 = ConvModule(c * 4, c * 2, 1, **plain)
        self.down_1 = ConvModule(c * 2, c * 4, 3, stride=2, padding=1, **plain)
        self.compression_2 = ConvModule(c * 8, c * 2, 1, **plain)
        self.down_2 = nn.Sequential(
            ConvModule(c * 2, c * 4, 3, stride=2, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg),
            ConvModule(c * 4, c * 8, 3, stride=2, padding=1, **plain),
        )
        self.spatial_branch_layers = nn.ModuleList(
            self._make_layer(BasicBlock if i < 2 else Bottleneck, c * 2, c * 2, 2 if i < 2 else 1)
            for i in range(3)
        )
        self.spp = DAPPM(c * 16, ppm_channels, c * 4, num_scales=5)

    def _make_stem_layer(self, in_channels: int, channels: int, num_blocks: int) -> nn.Sequential:
        common = dict(stride=2, padding=1, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        return nn.Sequential(
            ConvModule(in_channels, channels, 3, **common),
            ConvModule(channels, channels, 3, **common),
            self._make_layer(BasicBlock, channels, channels, num_blocks),
            nn.ReLU(),
            self._make_layer(BasicBlock, channels, channels * 2, num_blocks, stride=2),
            nn.ReLU(),
        )

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        inplanes: int,
        planes: int,
        num_blocks: int,
        stride: int = 1,
    ) -> nn.Sequential:
        out = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False),
                build_norm_layer(self.norm_cfg, out)[1],
            )
        # as upstream, the first block keeps the blocks' own defaults (BN, ReLU out); the
        # others take norm_cfg, and the last of them has no activation after the sum
        layers: list[nn.Module] = [block(inplanes, planes, stride=stride, downsample=downsample)]
        for i in range(1, num_blocks):
            act_out = None if i == num_blocks - 1 else self.act_cfg
            layers.append(block(out, planes, stride=1, norm_cfg=self.norm_cfg, act_cfg_out=act_out))
        return nn.Sequential(*layers)

    def _up(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out_size = (x.shape[-2] // 8, x.shape[-1] // 8)
        x = self.stem(x)
        # first exchange: context 1/16 <-> spatial 1/8
        x_c = self.context_branch_layers[0](x)
        x_s = self.spatial_branch_layers[0](x)
        comp_c = self.compression_1(self.relu(x_c))
        x_c = x_c + self.down_1(self.relu(x_s))
        x_s = x_s + self._up(comp_c, out_size)
        temp_context = x_s.clone() if self.training else None
        # second exchange: context 1/32 <-> spatial 1/8
        x_c = self.context_branch_layers[1](self.relu(x_c))
        x_s = self.spatial_branch_layers[1](self.relu(x_s))
        comp_c = self.compression_2(self.relu(x_c))
        x_c = x_c + self.down_2(self.relu(x_s))
        x_s = x_s + self._up(comp_c, out_size)
        x_s = self.spatial_branch_layers[2](self.relu(x_s))
        x_c = self._up(self.spp(self.context_branch_layers[2](self.relu(x_c))), out_size)
        if self.training:
            return temp_context, x_s + x_c
        return x_s + x_c
