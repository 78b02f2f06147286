"""RepMLPNet backbone (`RepMLP: Re-parameterizing Convolutions into Fully-connected Layers
for Image Recognition <https://arxiv.org/abs/2105.01883>`_), with MMPretrain's arguments and
keys.

A RepMLP block splits each channel's map into ``h x w`` patches (``h``, ``w`` the stage's
patch grid at ``img_size``, so the network takes that input size only), mixes every patch
with one fully-connected layer per share-set of channels (``fc3``, a grouped 1x1 conv over
the flattened patch, then BN per share-set), adds small-kernel conv + BN branches over the
same patches (the "local perceptron", ``repconv{k}``), and rescales channels by a global
SE-style perceptron (``gp``). ``switch_to_deploy()`` (or ``deploy=True``) folds the BN and
the conv branches into ``fc3`` (a conv is a sparse FC on a fixed-size patch).

Keys: ``patch_embed.{projection,norm}``, ``stages.{i}.{j}`` units with
``repmlp_block.{gp.conv{1,2}.conv, fc3, fc3_bn, repconv{k}.{conv,bn}}``,
``ffn_block.ffn_fc{1,2}.{conv,bn}``, ``norm1``, ``norm2``; ``downsample_layers.{i}.{conv,bn}``
and ``final_norm``. Deploy blocks keep ``fc3`` (now with bias) and drop ``fc3_bn`` and the
``repconv`` branches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, build_activation_layer, build_conv_layer
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed as _PatchEmbed
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.reparam import (
    check_batch_norm,
    deployable_blocks,
    fuse_conv_bn,
    load_fused,
    pad_kernel,
)
from vistra.models.layers.se_layer_mmpretrain import SELayer
from vistra.registry import MODELS


class PatchEmbed(_PatchEmbed):
    """mmcv's patch embedding kept as a map: projection, norm on ``(N, C, h, w)``, ReLU."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.adaptive_padding is not None:
            x = self.adaptive_padding(x)
        x = self.projection(x)
        if self.norm is not None:
            x = self.norm(x)
        x = self.relu(x)
        return x, (int(x.shape[2]), int(x.shape[3]))


class GlobalPerceptron(SELayer):
    """The per-channel weights of an SE layer (ReLU, sigmoid) of reduction ``ratio``."""

    def __init__(self, input_channels: int, ratio: int) -> None:
        super().__init__(input_channels, ratio=ratio, return_weight=True)


class RepMLPBlock(BaseModule):
    """Partition perceptron (``fc3`` + ``fc3_bn``) plus local perceptron (``repconv{k}``)
    over ``path_h x path_w`` patches, times the global perceptron's channel weights."""

    def __init__(
        self,
        channels: int,
        path_h: int,
        path_w: int,
        reparam_conv_kernels: Sequence[int] | None = None,
        globalperceptron_ratio: int = 4,
        num_sharesets: int = 1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        deploy: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN", requires_grad=True) if norm_cfg is None else norm_cfg
        if channels % num_sharesets:
            raise ValueError(
                f"RepMLPBlock: {channels} channels do not split into {num_sharesets} share-sets"
            )
        self.channels, self.num_sharesets = channels, num_sharesets
        self.path_h, self.path_w = path_h, path_w
        self.conv_cfg, self.deploy = conv_cfg, deploy
        self._fc_channels = path_h * path_w * num_sharesets
        self.gp = GlobalPerceptron(channels, globalperceptron_ratio)
        self.fc3 = build_conv_layer(
            conv_cfg, self._fc_channels, self._fc_channels, kernel_size=1, stride=1,
            padding=0, bias=deploy, groups=num_sharesets,
        )  # fmt: skip
        self.fc3_bn = nn.Identity() if deploy else build_norm_layer(norm_cfg, num_sharesets)[1]
        self.reparam_conv_kernels = (
            None if reparam_conv_kernels is None else tuple(reparam_conv_kernels)
        )
        if not deploy and self.reparam_conv_kernels is not None:
            for k in self.reparam_conv_kernels:
                # MMPretrain builds the local perceptron with BN whatever norm_cfg says
                branch = ConvModule(
                    num_sharesets, num_sharesets, k, stride=1, padding=k // 2,
                    norm_cfg=dict(type="BN", requires_grad=True), groups=num_sharesets,
                    act_cfg=None,
                )  # fmt: skip
                self.add_module(f"repconv{k}", branch)

    def _local_branches(self) -> list[tuple[int, ConvModule]]:
        if self.deploy or self.reparam_conv_kernels is None:
            return []
        return [(k, getattr(self, f"repconv{k}")) for k in self.reparam_conv_kernels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.gp(x)
        n, c, height, width = x.shape
        h_parts, w_parts = height // self.path_h, width // self.path_w
        # (N, C, H, W) -> (N, h_parts, w_parts, C, path_h, path_w): one row per patch
        patches = x.reshape(n, c, h_parts, self.path_h, w_parts, self.path_w)
        patches = patches.permute(0, 2, 4, 1, 3, 5)
        out = self.fc3(patches.reshape(-1, self._fc_channels, 1, 1))
        out = self.fc3_bn(out.reshape(-1, self.num_sharesets, self.path_h, self.path_w))
        local = self._local_branches()
        if local:
            conv_inputs = patches.reshape(-1, self.num_sharesets, self.path_h, self.path_w)
            # the local branches summed first, then added (MMPretrain's float rounding)
            conv_out = local[0][1](conv_inputs)
            for _, branch in local[1:]:
                conv_out = conv_out + branch(conv_inputs)
            out = out + conv_out
        out = out.reshape(n, h_parts, w_parts, c, self.path_h, self.path_w)
        out = out.permute(0, 3, 1, 4, 2, 5).reshape(n, c, height, width)
        return out * weights

    def _conv_as_fc(self, kernel: torch.Tensor) -> torch.Tensor:
        """The ``(S*h*w, h*w)`` FC weight of a grouped conv on one ``h x w`` patch: column
        ``p`` is the conv's response to a one-hot input at position ``p``."""
        hw, sets = self.path_h * self.path_w, self.num_sharesets
        one_hots = torch.eye(hw, dtype=kernel.dtype, device=kernel.device)
        one_hots = one_hots.reshape(hw, 1, self.path_h, self.path_w).expand(hw, sets, -1, -1)
        padding = (kernel.shape[2] // 2, kernel.shape[3] // 2)
        response = F.conv2d(one_hots, kernel, padding=padding, groups=sets)
        return response.reshape(hw, sets * hw).t()

    def get_equivalent_fc3(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``fc3``'s weight and bias (float64) with ``fc3_bn`` and the local branches in."""
        weight, bias = fuse_conv_bn(self.fc3.weight, self.fc3_bn)
        local = self._local_branches()
        if local:
            largest = max(k for k, _ in local)
            kernel = bias_sum = 0
            for _, branch in local:
                k, b = fuse_conv_bn(branch.conv.weight, branch.bn)
                kernel, bias_sum = kernel + pad_kernel(k, largest), bias_sum + b
            weight = weight + self._conv_as_fc(kernel).reshape_as(weight)
            bias = bias + bias_sum.repeat_interleave(self.path_h * self.path_w)
        return weight, bias

    @torch.no_grad()
    def local_inject(self) -> None:
        """Fold ``fc3_bn`` and the local perceptron into ``fc3`` (a no-op when deployed)."""
        if self.deploy:
            return
        check_batch_norm(self.fc3_bn, "RepMLPBlock")
        for _, branch in self._local_branches():
            check_batch_norm(branch.bn, "RepMLPBlock")
        weight, bias = self.get_equivalent_fc3()
        like = self.fc3.weight
        for k, _ in self._local_branches():
            delattr(self, f"repconv{k}")
        conv = build_conv_layer(
            self.conv_cfg, self._fc_channels, self._fc_channels, kernel_size=1, stride=1,
            padding=0, bias=True, groups=self.num_sharesets,
        )  # fmt: skip
        self.fc3 = load_fused(conv, weight, bias, like)
        self.fc3_bn = nn.Identity()
        self.deploy = True

    switch_to_deploy = local_inject


class ConvFFN(nn.Module):
    """1x1 ConvModule (BN, no activation) -> GELU -> 1x1 ConvModule (BN)."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | None = None,
        out_channels: int | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="BN", requires_grad=True) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        hidden = hidden_channels or in_channels
        out_channels = out_channels or in_channels
        self.ffn_fc1 = ConvModule(in_channels, hidden, 1, norm_cfg=norm_cfg, act_cfg=None)
        self.ffn_fc2 = ConvModule(hidden, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_fc2(self.act(self.ffn_fc1(x)))


class RepMLPNetUnit(BaseModule):
    """``y = x + repmlp(norm1(x))``, then ``y + ffn(norm2(y))``."""

    def __init__(
        self,
        channels: int,
        path_h: int,
        path_w: int,
        reparam_conv_kernels: Sequence[int] | None,
        globalperceptron_ratio: int,
        norm_cfg: dict | None = None,
        ffn_expand: int = 4,
        num_sharesets: int = 1,
        deploy: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN", requires_grad=True) if norm_cfg is None else norm_cfg
        # MMPretrain hands the block neither norm_cfg nor conv_cfg: fc3_bn is always BN
        self.repmlp_block = RepMLPBlock(
            channels, path_h, path_w, reparam_conv_kernels=reparam_conv_kernels,
            globalperceptron_ratio=globalperceptron_ratio, num_sharesets=num_sharesets,
            deploy=deploy,
        )  # fmt: skip
        self.ffn_block = ConvFFN(channels, channels * ffn_expand)
        self.norm1 = build_norm_layer(norm_cfg, channels)[1]
        self.norm2 = build_norm_layer(norm_cfg, channels)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.repmlp_block(self.norm1(x))
        return y + self.ffn_block(self.norm2(y))


class _AnyCaseTable(dict):
    """An arch table whose names match in any case (MMPretrain lower-cases ``arch``, and its
    configs write ``arch='B'``), for the constructor and for config checks alike."""

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def __getitem__(self, key: str) -> dict:
        return super().__getitem__(key.lower() if isinstance(key, str) else key)


@MODELS.register_module()
class RepMLPNet(BaseModule):
    """RepMLPNet: a ``patch_size`` patch embedding (conv, BN, ReLU), four stages of RepMLP
    units with 2x2 stride-2 ConvModules between them, and a final BN.

    ``arch`` is a name of ``arch_zoo`` (case-insensitive) or a dict with exactly
    ``channels``, ``depths`` and ``sharesets_nums`` (one entry per stage). Stage ``i``
    works on patches of ``(img_size / patch_size) / 2**i``, so inputs must be ``img_size``.
    As MMPretrain's, the output of stage ``i < last`` is taken *after* its downsampling
    layer, and the last stage's after ``final_norm``.
    """

    arch_zoo = _AnyCaseTable(
        {
            name: {
                "channels": [96, 192, 384, 768],
                "depths": [2, 2, 12, 2],
                "sharesets_nums": [1, 4, 32, 128],
            }
            for name in ("b", "base")
        }
    )
    num_extra_tokens = 0  # no class token
    _ARCH_KEYS = {"channels", "depths", "sharesets_nums"}

    def __init__(
        self,
        arch: str | dict,
        img_size: int | tuple[int, int] = 224,
        in_channels: int = 3,
        patch_size: int | tuple[int, int] = 4,
        out_indices: Sequence[int] = (3,),
        reparam_conv_kernels: Sequence[int] | None = (3,),
        globalperceptron_ratio: int = 4,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        patch_cfg: dict | None = None,
        final_norm: bool = True,
        deploy: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN", requires_grad=True) if norm_cfg is None else norm_cfg
        self.arch_settings = self._parse_arch(arch)
        self.img_size, self.patch_size = to_2tuple(img_size), to_2tuple(patch_size)
        self.channels = list(self.arch_settings["channels"])
        self.depths = list(self.arch_settings["depths"])
        self.sharesets_nums = list(self.arch_settings["sharesets_nums"])
        self.num_stage = len(self.channels)
        self.out_indices = self._parse_out_indices(out_indices, self.num_stage)
        self.deploy = deploy

        embed_cfg = dict(
            in_channels=in_channels, input_size=self.img_size, embed_dims=self.channels[0],
            conv_type="Conv2d", kernel_size=self.patch_size, stride=self.patch_size,
            norm_cfg=norm_cfg, bias=False,
        )  # fmt: skip
        embed_cfg.update(patch_cfg or {})
        self.patch_embed = PatchEmbed(**embed_cfg)
        self.patch_resolution = self.patch_embed.init_out_size
        self.patch_hs = [self.patch_resolution[0] // 2**i for i in range(self.num_stage)]
        self.patch_ws = [self.patch_resolution[1] // 2**i for i in range(self.num_stage)]

        self.stages = nn.ModuleList()
        self.downsample_layers = nn.ModuleList()
        for i in range(self.num_stage):
            units = [
                RepMLPNetUnit(
                    self.channels[i],
                    self.patch_hs[i],
                    self.patch_ws[i],
                    reparam_conv_kernels=reparam_conv_kernels,
                    globalperceptron_ratio=globalperceptron_ratio,
                    norm_cfg=norm_cfg,
                    ffn_expand=4,
                    num_sharesets=self.sharesets_nums[i],
                    deploy=deploy,
                )  # fmt: skip
                for _ in range(self.depths[i])
            ]
            self.stages.append(nn.Sequential(*units))
            if i < self.num_stage - 1:
                self.downsample_layers.append(
                    ConvModule(
                        self.channels[i], self.channels[i + 1], 2, stride=2, padding=0,
                        conv_cfg=conv_cfg, norm_cfg=norm_cfg, inplace=True,
                    )
                )  # fmt: skip
        self.final_norm = (
            build_norm_layer(norm_cfg, self.channels[-1])[1] if final_norm else nn.Identity()
        )

    def _parse_arch(self, arch: str | dict) -> dict:
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise ValueError(
                    f"arch={arch!r} is not a RepMLPNet arch. Valid (any case): "
                    f"{sorted(self.arch_zoo)} or a dict with {sorted(self._ARCH_KEYS)}"
                )
            return {k: list(v) for k, v in self.arch_zoo[arch].items()}
        if not isinstance(arch, dict) or set(arch) != self._ARCH_KEYS:
            got = sorted(arch) if isinstance(arch, dict) else repr(arch)
            raise ValueError(
                f"a custom RepMLPNet arch must be a dict with exactly {sorted(self._ARCH_KEYS)}, "
                f"got {got}"
            )
        lengths = {k: len(v) if isinstance(v, Sequence) else None for k, v in arch.items()}
        if len(set(lengths.values())) != 1 or None in lengths.values():
            raise ValueError(f"RepMLPNet arch entries must be lists of one length, got {lengths}")
        return {k: list(v) for k, v in arch.items()}

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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if tuple(x.shape[2:]) != self.img_size:
            raise ValueError(
                f"RepMLPNet takes inputs of img_size={self.img_size} only (its MLPs are "
                f"sized to the patch grid), got {tuple(x.shape[2:])}"
            )
        x, _ = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            last = i == self.num_stage - 1
            if not last:
                x = self.downsample_layers[i](x)
            if i in self.out_indices:
                outs.append(self.final_norm(x) if last else x)
        return tuple(outs)

    def switch_to_deploy(self) -> None:
        """Fold every block's BN and local perceptron into its ``fc3`` (the keys of the
        ``deploy=True`` model)."""
        for block in deployable_blocks(self, "local_inject"):
            block.local_inject()
        self.deploy = True
