"""RepVGG backbone (`RepVGG: Making VGG-style ConvNets Great Again
<https://arxiv.org/abs/2101.03697>`_), with MMPretrain's arguments and keys.

Every block trains as three parallel branches -- 3x3 conv + BN, 1x1 conv + BN and, where
input and output shapes agree, a BN-only identity -- summed, optionally squeezed-and-excited,
then ReLU. ``switch_to_deploy()`` (or ``deploy=True`` at construction) replaces the branches
by the one 3x3 conv with bias they equal.

Keys: ``stem`` and ``stage_{1..4}.{j}`` blocks with ``branch_3x3.{conv,norm}``,
``branch_1x1.{conv,norm}``, ``branch_norm`` (identity branches only) and
``se_layer.conv{1,2}.conv`` (SE archs); deploy blocks hold ``branch_reparam`` instead of
the three branches. ``add_ppf=True`` (YOLOX-PAI) adds ``ppf.conv{1,2}.{conv,bn}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.utils.checkpoint as cp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, build_activation_layer, build_conv_layer
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.reparam import (
    check_batch_norm,
    conv_bn,
    deployable_blocks,
    fuse_bn_identity,
    fuse_branch,
    load_fused,
    pad_kernel,
)
from vistra.models.layers.se_layer_mmpretrain import SELayer
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer=["Conv2d"]),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]


class RepVGGBlock(BaseModule):
    """``act(se(3x3(x) + 1x1(x) + bn(x)))`` while training; ``act(se(conv3x3(x)))`` once
    re-parameterised. The identity branch exists when ``in_channels == out_channels``,
    ``stride == 1`` and ``padding == dilation`` (the 3x3 output keeps the input's size)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
        se_cfg: dict | None = None,
        with_cp: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        deploy: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if se_cfg is not None and not isinstance(se_cfg, dict):
            raise TypeError(f"RepVGGBlock se_cfg must be a dict or None, got {se_cfg!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.with_cp, self.conv_cfg, self.deploy = with_cp, conv_cfg, deploy
        self.norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU") if act_cfg is None else act_cfg
        if deploy:
            self.branch_reparam = build_conv_layer(
                conv_cfg, in_channels, out_channels, kernel_size=3, stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=True,
                padding_mode=padding_mode,
            )  # fmt: skip
        else:
            same_shape = in_channels == out_channels and stride == 1 and padding == dilation
            self.branch_norm = (
                build_norm_layer(self.norm_cfg, in_channels)[1] if same_shape else None
            )
            self.branch_3x3 = self._conv_bn(3, padding=padding, dilation=dilation)
            self.branch_1x1 = self._conv_bn(1)
        self.se_layer = SELayer(out_channels, **se_cfg) if se_cfg is not None else None
        self.act = build_activation_layer(act_cfg)

    def _conv_bn(self, kernel_size: int, padding: int = 0, dilation: int = 1) -> nn.Sequential:
        return conv_bn(
            self.in_channels, self.out_channels, kernel_size, stride=self.stride,
            padding=padding, dilation=dilation, groups=self.groups, conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
        )  # fmt: skip

    def _branches(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            out = self.branch_reparam(x)
        else:
            out = self.branch_3x3(x) + self.branch_1x1(x)
            if self.branch_norm is not None:
                out = out + self.branch_norm(x)
        return self.se_layer(out) if self.se_layer is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._branches, x, use_reentrant=False)
        else:
            out = self._branches(x)
        return self.act(out)

    def reparameterize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel and bias (float64) the three branches sum to."""
        weight, bias = fuse_branch(self.branch_3x3)
        weight_1x1, bias_1x1 = fuse_branch(self.branch_1x1)
        weight, bias = weight + pad_kernel(weight_1x1, 3), bias + bias_1x1
        if self.branch_norm is not None:
            weight_id, bias_id = fuse_bn_identity(self.branch_norm, self.groups, 3)
            weight, bias = weight + weight_id, bias + bias_id
        return weight, bias

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Replace the branches by the one 3x3 conv they equal (a no-op when deployed)."""
        if self.deploy:
            return
        for norm in (self.branch_3x3[1], self.branch_1x1[1], self.branch_norm):
            if norm is not None:
                check_batch_norm(norm, "RepVGGBlock")
        weight, bias = self.reparameterize()
        like = self.branch_3x3[0]
        conv = build_conv_layer(
            self.conv_cfg, self.in_channels, self.out_channels, kernel_size=3,
            stride=self.stride, padding=self.padding, dilation=self.dilation,
            groups=self.groups, bias=True,
        )  # fmt: skip
        self.branch_reparam = load_fused(conv, weight, bias, like.weight)
        del self.branch_3x3, self.branch_1x1, self.branch_norm
        self.deploy = True


class MTSPPF(BaseModule):
    """YOLOX-PAI's spatial pyramid pooling: a 1x1 ConvModule to half the width, three
    chained ``kernel_size`` max-pools, the four maps concatenated and a 1x1 ConvModule."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU") if act_cfg is None else act_cfg
        hidden = in_channels // 2
        self.conv1 = ConvModule(in_channels, hidden, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv2 = ConvModule(hidden * 4, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.maxpool = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        y1 = self.maxpool(x)
        y2 = self.maxpool(y1)
        return self.conv2(torch.cat([x, y1, y2, self.maxpool(y2)], dim=1))


def _group_map(groups: int) -> dict[int, int]:
    # the grouped archs group every other block, counting the stem as block 0
    return {layer: groups for layer in range(2, 27, 2)}


@MODELS.register_module()
class RepVGG(BaseModule):
    """RepVGG: a stride-2 RepVGG block stem and four stages of RepVGG blocks, the first of
    each strided.

    ``arch`` is a name of ``arch_settings`` or a dict with ``num_blocks`` and
    ``width_factor`` (optionally ``group_layer_map``: {block index: groups}, counting the
    stem as 0; ``se_cfg``; ``stem_channels``, default 64). Stage ``i`` is
    ``int(base_channels * 2**i * width_factor[i])`` wide and the stem
    ``min(stem_channels, int(base_channels * width_factor[0]))``. ``frozen_stages=n``
    freezes the stem (for any ``n >= 0``) and the first ``n`` stages; ``norm_eval`` keeps
    every BN in eval mode while training. ``deploy=True`` builds the fused model directly.
    """

    arch_settings = {
        "A0": dict(num_blocks=[2, 4, 14, 1], width_factor=[0.75, 0.75, 0.75, 2.5],
                   group_layer_map=None, se_cfg=None),
        "A1": dict(num_blocks=[2, 4, 14, 1], width_factor=[1, 1, 1, 2.5],
                   group_layer_map=None, se_cfg=None),
        "A2": dict(num_blocks=[2, 4, 14, 1], width_factor=[1.5, 1.5, 1.5, 2.75],
                   group_layer_map=None, se_cfg=None),
        "B0": dict(num_blocks=[4, 6, 16, 1], width_factor=[1, 1, 1, 2.5],
                   group_layer_map=None, se_cfg=None, stem_channels=64),
        "B1": dict(num_blocks=[4, 6, 16, 1], width_factor=[2, 2, 2, 4],
                   group_layer_map=None, se_cfg=None),
        "B1g2": dict(num_blocks=[4, 6, 16, 1], width_factor=[2, 2, 2, 4],
                     group_layer_map=_group_map(2), se_cfg=None),
        "B1g4": dict(num_blocks=[4, 6, 16, 1], width_factor=[2, 2, 2, 4],
                     group_layer_map=_group_map(4), se_cfg=None),
        "B2": dict(num_blocks=[4, 6, 16, 1], width_factor=[2.5, 2.5, 2.5, 5],
                   group_layer_map=None, se_cfg=None),
        "B2g2": dict(num_blocks=[4, 6, 16, 1], width_factor=[2.5, 2.5, 2.5, 5],
                     group_layer_map=_group_map(2), se_cfg=None),
        "B2g4": dict(num_blocks=[4, 6, 16, 1], width_factor=[2.5, 2.5, 2.5, 5],
                     group_layer_map=_group_map(4), se_cfg=None),
        "B3": dict(num_blocks=[4, 6, 16, 1], width_factor=[3, 3, 3, 5],
                   group_layer_map=None, se_cfg=None),
        "B3g2": dict(num_blocks=[4, 6, 16, 1], width_factor=[3, 3, 3, 5],
                     group_layer_map=_group_map(2), se_cfg=None),
        "B3g4": dict(num_blocks=[4, 6, 16, 1], width_factor=[3, 3, 3, 5],
                     group_layer_map=_group_map(4), se_cfg=None),
        "D2se": dict(num_blocks=[8, 14, 24, 1], width_factor=[2.5, 2.5, 2.5, 5],
                     group_layer_map=None, se_cfg=dict(ratio=16, divisor=1)),
        "yolox-pai-small": dict(num_blocks=[3, 5, 7, 3], width_factor=[1, 1, 1, 1],
                                group_layer_map=None, se_cfg=None, stem_channels=32),
    }  # fmt: skip

    def __init__(
        self,
        arch: str | dict,
        in_channels: int = 3,
        base_channels: int = 64,
        out_indices: Sequence[int] = (3,),
        strides: Sequence[int] = (2, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        with_cp: bool = False,
        deploy: bool = False,
        norm_eval: bool = False,
        add_ppf: bool = False,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU") if act_cfg is None else act_cfg
        arch = pick_arch(arch, self.arch_settings, "RepVGG", ("num_blocks", "width_factor"))
        arch.setdefault("group_layer_map", None)
        arch.setdefault("se_cfg", None)
        num_blocks, width_factor = list(arch["num_blocks"]), list(arch["width_factor"])
        self._check_lengths(num_blocks, width_factor, strides, dilations)
        self.num_stages = len(num_blocks)
        self.out_indices = self._parse_out_indices(out_indices, self.num_stages)
        group_map = arch["group_layer_map"] or {}
        if group_map and max(group_map) > sum(num_blocks):
            raise ValueError(
                f"RepVGG arch group_layer_map names block {max(group_map)}, but the arch has "
                f"{sum(num_blocks)} blocks"
            )
        self.arch, self.deploy, self.frozen_stages, self.norm_eval = (
            arch,
            deploy,
            frozen_stages,
            norm_eval,
        )
        block_args = dict(se_cfg=arch["se_cfg"], with_cp=with_cp, conv_cfg=conv_cfg,
                          norm_cfg=norm_cfg, act_cfg=act_cfg, deploy=deploy)  # fmt: skip

        channels = min(arch.get("stem_channels", 64), int(base_channels * width_factor[0]))
        self.stem = RepVGGBlock(in_channels, channels, stride=2, **block_args)
        block_index = 1  # the stem is block 0 of group_layer_map
        self.stages: list[str] = []
        for i, depth in enumerate(num_blocks):
            out_channels = int(base_channels * 2**i * width_factor[i])
            blocks = []
            for j in range(depth):
                blocks.append(
                    RepVGGBlock(
                        channels, out_channels, stride=strides[i] if j == 0 else 1,
                        padding=dilations[i], dilation=dilations[i],
                        groups=group_map.get(block_index, 1), **block_args,
                    )
                )  # fmt: skip
                channels = out_channels
                block_index += 1
            self.add_module(f"stage_{i + 1}", nn.Sequential(*blocks))
            self.stages.append(f"stage_{i + 1}")
        self.ppf = (
            MTSPPF(channels, channels, norm_cfg=norm_cfg, act_cfg=act_cfg, kernel_size=5)
            if add_ppf
            else nn.Identity()
        )
        self._freeze_stages()

    @staticmethod
    def _check_lengths(num_blocks, width_factor, strides, dilations) -> None:
        lengths = dict(num_blocks=len(num_blocks), width_factor=len(width_factor),
                       strides=len(strides), dilations=len(dilations))  # fmt: skip
        if len(set(lengths.values())) != 1:
            raise ValueError(f"RepVGG: arch num_blocks, width_factor, strides and dilations "
                             f"must have one length per stage, got lengths {lengths}")  # fmt: skip

    @staticmethod
    def _parse_out_indices(out_indices: int | Sequence[int], num_stages: int) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        parsed = []
        for index in out_indices:
            resolved = num_stages + index if index < 0 else index
            if not 0 <= resolved < num_stages:
                raise ValueError(
                    f"out_indices: invalid index {index} for {num_stages} stages "
                    f"(valid: 0..{num_stages - 1} or negative from the end)"
                )
            parsed.append(resolved)
        return parsed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, name in enumerate(self.stages):
            x = getattr(self, name)(x)
            if i == self.num_stages - 1:
                x = self.ppf(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.stem.eval()
            for param in self.stem.parameters():
                param.requires_grad = False
        for i in range(self.frozen_stages):
            stage = getattr(self, f"stage_{i + 1}")
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> RepVGG:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def switch_to_deploy(self) -> None:
        """Fuse every block's branches into one 3x3 conv (keys of the ``deploy=True`` model)."""
        for block in deployable_blocks(self):
            block.switch_to_deploy()
        self.deploy = True
