"""MobileOne backbone (`An Improved One millisecond Mobile Backbone
<https://arxiv.org/abs/2206.04040>`_), with MMPretrain's arguments and keys.

Each stage repeats a pair of re-parameterisable blocks: a depthwise 3x3 block and a
pointwise 1x1 block. A block trains as ``num_convs`` parallel conv + BN branches, a 1x1
conv + BN "scale" branch (for kernels larger than 1) and a BN-only identity (where shapes
agree), summed, optionally squeezed-and-excited, then ReLU. ``switch_to_deploy()`` (or
``deploy=True``) replaces the branches by the single conv with bias they equal.

Keys: ``stage0`` (the stride-2 stem block) and ``stage{1..4}.{j}`` blocks (even ``j``
depthwise, odd ``j`` pointwise) with ``branch_conv_list.{k}.{conv,norm}``,
``branch_scale.{conv,norm}``, ``branch_norm`` and ``se.conv{1,2}.conv``; deploy blocks hold
``branch_reparam`` instead of the branches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.base import BaseModule
from vistra.models.layers import build_activation_layer, build_conv_layer
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
    dict(type="Constant", val=1, layer=["_BatchNorm"]),
]


class MobileOneBlock(BaseModule):
    """``act(se(sum of branches))``: ``num_convs`` kxk conv + BN branches, a 1x1 conv + BN
    branch when ``kernel_size > 1`` and a BN identity when ``in_channels == out_channels``
    and ``stride == 1``; one kxk conv with bias once re-parameterised."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_convs: int,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        se_cfg: dict | None = None,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        deploy: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if se_cfg is not None and not isinstance(se_cfg, dict):
            raise TypeError(f"MobileOneBlock se_cfg must be a dict or None, got {se_cfg!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.num_conv_branches = kernel_size, num_convs
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.conv_cfg, self.deploy = conv_cfg, deploy
        self.norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU") if act_cfg is None else act_cfg
        self.se = SELayer(out_channels, **se_cfg) if se_cfg is not None else nn.Identity()
        if deploy:
            self.branch_reparam = build_conv_layer(
                conv_cfg, in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=True,
            )  # fmt: skip
        else:
            same_shape = in_channels == out_channels and stride == 1
            self.branch_norm = (
                build_norm_layer(self.norm_cfg, in_channels)[1] if same_shape else None
            )
            self.branch_scale = self._conv_bn(1) if kernel_size > 1 else None
            self.branch_conv_list = nn.ModuleList(
                self._conv_bn(kernel_size, padding=padding, dilation=dilation)
                for _ in range(num_convs)
            )
        self.act = build_activation_layer(act_cfg)

    def _conv_bn(self, kernel_size: int, padding: int = 0, dilation: int = 1) -> nn.Sequential:
        return conv_bn(
            self.in_channels, self.out_channels, kernel_size, stride=self.stride,
            padding=padding, dilation=dilation, groups=self.groups, conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
        )  # fmt: skip

    def _branches(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.branch_reparam(x)
        # summed in MMPretrain's order (identity, scale, convs): the same float rounding
        outs = [self.branch_norm(x)] if self.branch_norm is not None else []
        if self.branch_scale is not None:
            outs.append(self.branch_scale(x))
        outs += [branch(x) for branch in self.branch_conv_list]
        out = outs[0]
        for other in outs[1:]:
            out = out + other
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self._branches(x)))

    def reparameterize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The kxk kernel and bias (float64) the branches sum to."""
        fused = [fuse_branch(branch) for branch in self.branch_conv_list]
        if self.branch_scale is not None:
            weight, bias = fuse_branch(self.branch_scale)
            fused.append((pad_kernel(weight, self.kernel_size), bias))
        if self.branch_norm is not None:
            fused.append(fuse_bn_identity(self.branch_norm, self.groups, self.kernel_size))
        return sum(w for w, _ in fused), sum(b for _, b in fused)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Replace the branches by the one conv they equal (a no-op when deployed)."""
        if self.deploy:
            return
        norms = [branch[1] for branch in self.branch_conv_list]
        norms += [self.branch_scale[1]] if self.branch_scale is not None else []
        norms += [self.branch_norm] if self.branch_norm is not None else []
        for norm in norms:
            check_batch_norm(norm, "MobileOneBlock")
        weight, bias = self.reparameterize()
        like = self.branch_conv_list[0][0].weight if len(self.branch_conv_list) else norms[0].weight
        conv = build_conv_layer(
            self.conv_cfg, self.in_channels, self.out_channels, kernel_size=self.kernel_size,
            stride=self.stride, padding=self.padding, dilation=self.dilation,
            groups=self.groups, bias=True,
        )  # fmt: skip
        self.branch_reparam = load_fused(conv, weight, bias, like)
        del self.branch_conv_list, self.branch_scale, self.branch_norm
        self.deploy = True


@MODELS.register_module()
class MobileOne(BaseModule):
    """MobileOne: a stride-2 3x3 block stem and four stages of depthwise/pointwise
    MobileOne block pairs, the first pair of each stage strided.

    ``arch`` is a name of ``arch_zoo`` or a dict with ``num_blocks``, ``width_factor``,
    ``num_conv_branches`` and ``num_se_blocks`` (four entries each; the last
    ``num_se_blocks[i]`` pairs of stage ``i`` get SE layers of ``se_cfg``). Stage ``i`` is
    ``int((64, 128, 256, 512)[i] * width_factor[i])`` wide, the stem
    ``min(64, int(64 * width_factor[0]))``. ``frozen_stages=n`` freezes the stem (for any
    ``n >= 0``) and the first ``n`` stages; ``norm_eval`` keeps every BN in eval mode while
    training. ``deploy=True`` builds the fused model directly.
    """

    arch_zoo = {
        "s0": dict(num_blocks=[2, 8, 10, 1], width_factor=[0.75, 1.0, 1.0, 2.0],
                   num_conv_branches=[4, 4, 4, 4], num_se_blocks=[0, 0, 0, 0]),
        "s1": dict(num_blocks=[2, 8, 10, 1], width_factor=[1.5, 1.5, 2.0, 2.5],
                   num_conv_branches=[1, 1, 1, 1], num_se_blocks=[0, 0, 0, 0]),
        "s2": dict(num_blocks=[2, 8, 10, 1], width_factor=[1.5, 2.0, 2.5, 4.0],
                   num_conv_branches=[1, 1, 1, 1], num_se_blocks=[0, 0, 0, 0]),
        "s3": dict(num_blocks=[2, 8, 10, 1], width_factor=[2.0, 2.5, 3.0, 4.0],
                   num_conv_branches=[1, 1, 1, 1], num_se_blocks=[0, 0, 0, 0]),
        "s4": dict(num_blocks=[2, 8, 10, 1], width_factor=[3.0, 3.5, 3.5, 4.0],
                   num_conv_branches=[1, 1, 1, 1], num_se_blocks=[0, 0, 5, 1]),
    }  # fmt: skip
    _ARCH_KEYS = ("num_blocks", "width_factor", "num_conv_branches", "num_se_blocks")
    _BASE_CHANNELS = (64, 128, 256, 512)

    def __init__(
        self,
        arch: str | dict,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = (3,),
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        se_cfg: dict | None = None,
        deploy: bool = False,
        norm_eval: bool = False,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU") if act_cfg is None else act_cfg
        se_cfg = dict(ratio=16) if se_cfg is None else se_cfg
        self.arch = pick_arch(arch, self.arch_zoo, "MobileOne", self._ARCH_KEYS)
        for key in self._ARCH_KEYS:
            value = self.arch[key]
            if not isinstance(value, Sequence) or len(value) != 4:
                raise ValueError(f"MobileOne arch {key} must be a list of 4 items, got {value!r}")
        self.deploy, self.frozen_stages, self.norm_eval = deploy, frozen_stages, norm_eval
        self._block_args = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                                deploy=deploy)  # fmt: skip
        self.se_cfg = se_cfg

        channels = min(64, int(self._BASE_CHANNELS[0] * self.arch["width_factor"][0]))
        self.stage0 = MobileOneBlock(
            in_channels, channels, kernel_size=3, num_convs=1, stride=2, **self._block_args
        )
        self.stages: list[str] = []
        for i, num_blocks in enumerate(self.arch["num_blocks"]):
            planes = int(self._BASE_CHANNELS[i] * self.arch["width_factor"][i])
            stage = self._make_stage(
                channels, planes, num_blocks, self.arch["num_se_blocks"][i],
                self.arch["num_conv_branches"][i],
            )  # fmt: skip
            self.add_module(f"stage{i + 1}", stage)
            self.stages.append(f"stage{i + 1}")
            channels = planes
        self.out_indices = self._parse_out_indices(out_indices)
        self._freeze_stages()

    def _make_stage(
        self, in_planes: int, planes: int, num_blocks: int, num_se: int, num_convs: int
    ) -> nn.Sequential:
        if num_se > num_blocks:
            raise ValueError(
                f"MobileOne arch num_se_blocks ({num_se}) cannot exceed num_blocks ({num_blocks})"
            )
        blocks = []
        for i in range(num_blocks):
            se_cfg = self.se_cfg if i >= num_blocks - num_se else None
            blocks.append(
                MobileOneBlock(
                    in_planes, in_planes, kernel_size=3, num_convs=num_convs,
                    stride=2 if i == 0 else 1, padding=1, groups=in_planes, se_cfg=se_cfg,
                    **self._block_args,
                )
            )  # fmt: skip
            blocks.append(
                MobileOneBlock(
                    in_planes, planes, kernel_size=1, num_convs=num_convs, stride=1,
                    padding=0, se_cfg=se_cfg, **self._block_args,
                )
            )  # fmt: skip
            in_planes = planes
        return nn.Sequential(*blocks)

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        num_stages = len(self.stages)
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
        x = self.stage0(x)
        outs = []
        for i, name in enumerate(self.stages):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.stage0.eval()
            for param in self.stage0.parameters():
                param.requires_grad = False
        for i in range(self.frozen_stages):
            stage = getattr(self, f"stage{i + 1}")
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> MobileOne:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def switch_to_deploy(self) -> None:
        """Fuse every block's branches into one conv (keys of the ``deploy=True`` model)."""
        for block in deployable_blocks(self):
            block.switch_to_deploy()
        self.deploy = True
