"""RepLKNet backbone (`Scaling Up Your Kernels to 31x31: Revisiting Large Kernel Design in
CNNs <https://arxiv.org/abs/2203.06717>`_), with MMPretrain's arguments and keys.

Each stage alternates a RepLK block (BN, 1x1 conv, a depthwise *large* kernel conv, ReLU,
1x1 conv, residual) and a ConvFFN block (BN, 1x1 conv, GELU, 1x1 conv, residual). The large
kernel trains with a parallel small-kernel depthwise conv + BN (``small_kernel``);
``switch_to_deploy()`` (or ``small_kernel_merged=True``, MMPretrain's name for the deploy
mode) folds both BNs and the small kernel into one large conv with bias.

Keys: ``stem.{0..3}.{conv,bn}``; ``stages.{i}.blocks.{2j}`` RepLK blocks with
``prelkb_bn``, ``pw1.{conv,bn}``, ``large_kernel.lkb_origin.{conv,bn}``,
``large_kernel.small_conv.{conv,bn}``, ``pw2.{conv,bn}`` (merged: ``large_kernel.lkb_reparam``);
``stages.{i}.blocks.{2j+1}`` ConvFFN blocks with ``preffn_bn``, ``pw1``, ``pw2``;
``stages.{i}.norm`` (a BN for each stage in ``out_indices``);
``transitions.{i}.{0,1}.{conv,bn}``.

As in MMPretrain, ``conv_cfg``, ``norm_cfg``, ``act_cfg``, ``strides``, ``dilations`` and
``norm_intermediate_features`` are accepted (strides and dilations must have one entry
per stage) but do not change the network: its layers are BN/ReLU/GELU with fixed strides,
and each stage in ``out_indices`` gets its output norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.utils.checkpoint as cp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.base import BaseModule
from vistra.models.layers import DropPath, build_activation_layer
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.reparam import (
    check_batch_norm,
    conv_bn,
    deployable_blocks,
    fuse_branch,
    fused_conv,
    pad_kernel,
)
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer=["Conv2d"]),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]


def _conv_bn(in_ch: int, out_ch: int, k: int, stride: int, padding: int, groups: int):
    return conv_bn(in_ch, out_ch, k, stride=stride, padding=padding, groups=groups,
                   norm_name="bn")  # fmt: skip


def _conv_bn_relu(in_ch: int, out_ch: int, k: int, stride: int, padding: int, groups: int):
    branch = _conv_bn(in_ch, out_ch, k, stride, padding, groups)
    branch.add_module("nonlinear", nn.ReLU())
    return branch


class ReparamLargeKernelConv(BaseModule):
    """A ``kernel_size`` conv + BN with a parallel ``small_kernel`` conv + BN (same stride
    and groups, centred padding); one ``kernel_size`` conv with bias once merged."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        groups: int,
        small_kernel: int | None,
        small_kernel_merged: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if small_kernel is not None and small_kernel > kernel_size:
            raise ValueError(
                f"ReparamLargeKernelConv: small_kernel ({small_kernel}) must not exceed "
                f"kernel_size ({kernel_size})"
            )
        self.kernel_size, self.small_kernel = kernel_size, small_kernel
        self.small_kernel_merged = small_kernel_merged
        padding = kernel_size // 2
        if small_kernel_merged:
            self.lkb_reparam = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                groups=groups, bias=True,
            )  # fmt: skip
        else:
            self.lkb_origin = _conv_bn(
                in_channels, out_channels, kernel_size, stride, padding, groups
            )
            if small_kernel is not None:
                self.small_conv = _conv_bn(
                    in_channels, out_channels, small_kernel, stride, small_kernel // 2, groups
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.small_kernel_merged:
            return self.lkb_reparam(x)
        out = self.lkb_origin(x)
        if self.small_kernel is not None:
            out = out + self.small_conv(x)
        return out

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The large kernel and bias (float64) the two branches sum to."""
        weight, bias = fuse_branch(self.lkb_origin)
        if self.small_kernel is not None:
            small_w, small_b = fuse_branch(self.small_conv)
            weight, bias = weight + pad_kernel(small_w, self.kernel_size), bias + small_b
        return weight, bias

    @torch.no_grad()
    def merge_kernel(self) -> None:
        """Replace both branches by the one large conv they equal (a no-op when merged)."""
        if self.small_kernel_merged:
            return
        check_batch_norm(self.lkb_origin.bn, "ReparamLargeKernelConv")
        if self.small_kernel is not None:
            check_batch_norm(self.small_conv.bn, "ReparamLargeKernelConv")
        weight, bias = self.get_equivalent_kernel_bias()
        self.lkb_reparam = fused_conv(self.lkb_origin.conv, weight, bias)
        del self.lkb_origin
        if self.small_kernel is not None:
            del self.small_conv
        self.small_kernel_merged = True

    switch_to_deploy = merge_kernel


class ConvFFN(BaseModule):
    """``x + drop_path(pw2(act(pw1(bn(x)))))`` with 1x1 conv + BN projections."""

    def __init__(
        self,
        in_channels: int,
        internal_channels: int,
        out_channels: int,
        drop_path: float,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.preffn_bn = build_norm_layer(norm_cfg, in_channels)[1]
        self.pw1 = _conv_bn(in_channels, internal_channels, 1, 1, 0, 1)
        self.pw2 = _conv_bn(internal_channels, out_channels, 1, 1, 0, 1)
        self.nonlinear = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw2(self.nonlinear(self.pw1(self.preffn_bn(x))))
        return x + self.drop_path(out)


class RepLKBlock(BaseModule):
    """``x + drop_path(pw2(act(large_kernel(pw1(bn(x))))))``; ``pw1`` is conv + BN + ReLU."""

    def __init__(
        self,
        in_channels: int,
        dw_channels: int,
        block_lk_size: int,
        small_kernel: int | None,
        drop_path: float,
        small_kernel_merged: bool = False,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU") if act_cfg is None else act_cfg
        self.pw1 = _conv_bn_relu(in_channels, dw_channels, 1, 1, 0, 1)
        self.pw2 = _conv_bn(dw_channels, in_channels, 1, 1, 0, 1)
        self.large_kernel = ReparamLargeKernelConv(
            dw_channels, dw_channels, block_lk_size, stride=1, groups=dw_channels,
            small_kernel=small_kernel, small_kernel_merged=small_kernel_merged,
        )  # fmt: skip
        self.lk_nonlinear = build_activation_layer(act_cfg)
        self.prelkb_bn = build_norm_layer(norm_cfg, in_channels)[1]
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.large_kernel(self.pw1(self.prelkb_bn(x)))
        out = self.pw2(self.lk_nonlinear(out))
        return x + self.drop_path(out)


class RepLKNetStage(BaseModule):
    """``num_blocks`` (RepLK block, ConvFFN) pairs, and ``norm`` (BN or identity) that the
    backbone applies to the stage's output when it is returned."""

    def __init__(
        self,
        channels: int,
        num_blocks: int,
        stage_lk_size: int,
        drop_path: float | Sequence[float],
        small_kernel: int | None,
        dw_ratio: float = 1,
        ffn_ratio: float = 4,
        with_cp: bool = False,
        small_kernel_merged: bool = False,
        norm_intermediate_features: bool = False,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        self.with_cp = with_cp
        blocks: list[nn.Module] = []
        for i in range(num_blocks):
            rate = drop_path[i] if isinstance(drop_path, Sequence) else drop_path
            blocks.append(
                RepLKBlock(
                    channels, int(channels * dw_ratio), stage_lk_size, small_kernel, rate,
                    small_kernel_merged=small_kernel_merged,
                )
            )  # fmt: skip
            blocks.append(ConvFFN(channels, int(channels * ffn_ratio), channels, rate))
        self.blocks = nn.ModuleList(blocks)
        self.norm = (
            build_norm_layer(norm_cfg, channels)[1] if norm_intermediate_features else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


@MODELS.register_module()
class RepLKNet(BaseModule):
    """RepLKNet: a four-layer stem (3x3 s2, depthwise 3x3, 1x1, depthwise 3x3 s2, each
    conv + BN + ReLU), four stages, and transitions (1x1 conv, depthwise 3x3 stride 2)
    between them.

    ``arch`` is a name of ``arch_settings`` or a dict with ``large_kernel_sizes``,
    ``layers``, ``channels``, ``small_kernel`` (``None``: no parallel small kernel) and
    ``dw_ratio``. Stochastic depth grows linearly from 0 to ``drop_path_rate`` over all
    blocks. ``frozen_stages=n`` freezes the stem (for any ``n >= 0``) and the first ``n``
    stages; ``norm_eval`` keeps every BN in eval mode while training.
    """

    arch_settings = {
        "31B": dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                    channels=[128, 256, 512, 1024], small_kernel=5, dw_ratio=1),
        "31L": dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                    channels=[192, 384, 768, 1536], small_kernel=5, dw_ratio=1),
        "XL": dict(large_kernel_sizes=[27, 27, 27, 13], layers=[2, 2, 18, 2],
                   channels=[256, 512, 1024, 2048], small_kernel=None, dw_ratio=1.5),
    }  # fmt: skip
    _ARCH_KEYS = ("large_kernel_sizes", "layers", "channels", "small_kernel", "dw_ratio")

    def __init__(
        self,
        arch: str | dict,
        in_channels: int = 3,
        ffn_ratio: float = 4,
        out_indices: Sequence[int] = (3,),
        strides: Sequence[int] = (2, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        with_cp: bool = False,
        drop_path_rate: float = 0.3,
        small_kernel_merged: bool = False,
        norm_intermediate_features: bool = False,
        norm_eval: bool = False,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        self.arch = pick_arch(arch, self.arch_settings, "RepLKNet", self._ARCH_KEYS)
        layers, channels = list(self.arch["layers"]), list(self.arch["channels"])
        lengths = dict(layers=len(layers), channels=len(channels),
                       large_kernel_sizes=len(self.arch["large_kernel_sizes"]),
                       strides=len(strides), dilations=len(dilations))  # fmt: skip
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"RepLKNet: arch layers, channels, large_kernel_sizes, strides and dilations "
                f"must have one length per stage, got lengths {lengths}"
            )
        self.num_stages = len(layers)
        self.out_indices = self._parse_out_indices(out_indices, self.num_stages)
        self.frozen_stages, self.norm_eval, self.with_cp = frozen_stages, norm_eval, with_cp
        self.small_kernel_merged = small_kernel_merged
        self.norm_intermediate_features = norm_intermediate_features

        base = channels[0]
        self.stem = nn.ModuleList([
            _conv_bn_relu(in_channels, base, 3, 2, 1, 1),
            _conv_bn_relu(base, base, 3, 1, 1, base),
            _conv_bn_relu(base, base, 1, 1, 0, 1),
            _conv_bn_relu(base, base, 3, 2, 1, base),
        ])  # fmt: skip
        rates = torch.linspace(0, drop_path_rate, sum(layers), device="cpu").tolist()
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i in range(self.num_stages):
            start = sum(layers[:i])
            self.stages.append(
                RepLKNetStage(
                    channels[i], layers[i], self.arch["large_kernel_sizes"][i],
                    drop_path=rates[start : start + layers[i]],
                    small_kernel=self.arch["small_kernel"], dw_ratio=self.arch["dw_ratio"],
                    ffn_ratio=ffn_ratio, with_cp=with_cp,
                    small_kernel_merged=small_kernel_merged,
                    norm_intermediate_features=i in self.out_indices,
                )
            )  # fmt: skip
            if i < self.num_stages - 1:
                self.transitions.append(
                    nn.Sequential(
                        _conv_bn_relu(channels[i], channels[i + 1], 1, 1, 0, 1),
                        _conv_bn_relu(channels[i + 1], channels[i + 1], 3, 2, 1, channels[i + 1]),
                    )
                )
        self._freeze_stages()

    @staticmethod
    def _parse_out_indices(out_indices: int | Sequence[int], num_stages: int) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        for index in out_indices:
            if not 0 <= index < num_stages:
                raise ValueError(
                    f"out_indices: invalid index {index} for {num_stages} stages "
                    f"(valid: 0..{num_stages - 1})"
                )
        return list(out_indices)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem[0](x)
        for layer in self.stem[1:]:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(stage.norm(x))
            if i < self.num_stages - 1:
                x = self.transitions[i](x)
        return outs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.forward_features(x))

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.stem.eval()
            for param in self.stem.parameters():
                param.requires_grad = False
        for i in range(self.frozen_stages):
            self.stages[i].eval()
            for param in self.stages[i].parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> RepLKNet:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def switch_to_deploy(self) -> None:
        """Merge every large kernel's BN and small kernel into it (the keys of the
        ``small_kernel_merged=True`` model)."""
        for block in deployable_blocks(self, "merge_kernel"):
            block.merge_kernel()
        self.small_kernel_merged = True
