"""MSCAN, the SegNeXt backbone (`SegNeXt: Rethinking Convolutional Attention Design for
Semantic Segmentation <https://arxiv.org/abs/2209.08575>`_), as MMSegmentation's.

Four stages; each embeds its input (a two-conv stem first, then a stride-2 3x3 conv),
runs MSCA blocks (depth-wise strip-conv attention and a conv MLP, both with layer scale)
and ends in a LayerNorm over the channels.

Keys: ``patch_embed1.proj.{0,1,3,4}`` (stem convs and norms), ``patch_embed{i}.proj`` /
``.norm`` (i >= 2), ``block{i}.{j}.norm1`` / ``.attn.proj_1`` /
``.attn.spatial_gating_unit.{conv0,conv0_1,conv0_2,conv1_1,conv1_2,conv2_1,conv2_2,conv3}``
/ ``.attn.proj_2`` / ``.norm2`` / ``.mlp.{fc1,dwconv,fc2}`` / ``.layer_scale_{1,2}``, and
``norm{i}``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.init import constant_init, normal_init, trunc_normal_init
from vistra.models.layers import DropPath, build_activation_layer, build_norm_layer
from vistra.registry import MODELS

_KERNEL_SIZES = (5, (1, 7), (1, 11), (1, 21))
_KERNEL_PADDINGS = (2, (0, 3), (0, 5), (0, 10))


class Mlp(BaseModule):
    """1x1 conv -> 3x3 depth-wise conv -> activation -> dropout -> 1x1 conv -> dropout."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_cfg: dict | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.dwconv = nn.Conv2d(
            hidden_features, hidden_features, 3, 1, 1, bias=True, groups=hidden_features
        )
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(hidden_features, out_features, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        return self.drop(self.fc2(x))


class StemConv(BaseModule):
    """Two stride-2 3x3 convs (norm, activation, norm): the first stage's embedding.
    Returns ``(tokens (N, H*W, C), H, W)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="SyncBN", requires_grad=True) if norm_cfg is None else norm_cfg
        half = out_channels // 2
        self.proj = nn.Sequential(
            nn.Conv2d(in_channels, half, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)),
            build_norm_layer(norm_cfg, half)[1],
            build_activation_layer(act_cfg),
            nn.Conv2d(half, out_channels, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)),
            build_norm_layer(norm_cfg, out_channels)[1],
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        _, _, h, w = x.shape
        return x.flatten(2).transpose(1, 2), h, w


class MSCAAttention(BaseModule):
    """Multi-scale convolutional attention: a 5x5 depth-wise conv, three branches of
    depth-wise strip convs (1xk then kx1), summed, mixed by a 1x1 conv, then multiplied
    with the input."""

    def __init__(
        self,
        channels: int,
        kernel_sizes: Sequence = _KERNEL_SIZES,
        paddings: Sequence = _KERNEL_PADDINGS,
    ) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(
            channels, channels, kernel_size=kernel_sizes[0], padding=paddings[0], groups=channels
        )
        for i, (kernel, pad) in enumerate(zip(kernel_sizes[1:], paddings[1:])):
            kernel, pad = tuple(kernel), tuple(pad)
            # conv{i}_1 is the strip as given, conv{i}_2 its transpose
            for suffix, k, p in (("1", kernel, pad), ("2", kernel[::-1], pad[::-1])):
                self.add_module(
                    f"conv{i}_{suffix}",
                    nn.Conv2d(channels, channels, k, padding=p, groups=channels),
                )
        self.num_branches = len(kernel_sizes) - 1
        self.conv3 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.clone()
        attn = self.conv0(x)
        branches = [
            getattr(self, f"conv{i}_2")(getattr(self, f"conv{i}_1")(attn))
            for i in range(self.num_branches)
        ]
        for branch in branches:  # summed left to right, as MMSegmentation's
            attn = attn + branch
        return self.conv3(attn) * u


class MSCASpatialAttention(BaseModule):
    """``x + proj_2(msca(act(proj_1(x))))``."""

    def __init__(
        self,
        in_channels: int,
        attention_kernel_sizes: Sequence = _KERNEL_SIZES,
        attention_kernel_paddings: Sequence = _KERNEL_PADDINGS,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.proj_1 = nn.Conv2d(in_channels, in_channels, 1)
        self.activation = build_activation_layer(act_cfg)
        self.spatial_gating_unit = MSCAAttention(
            in_channels, attention_kernel_sizes, attention_kernel_paddings
        )
        self.proj_2 = nn.Conv2d(in_channels, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x.clone()
        x = self.spatial_gating_unit(self.activation(self.proj_1(x)))
        return self.proj_2(x) + shortcut


class MSCABlock(BaseModule):
    """``x + ls1 * attn(norm1(x))`` then ``x + ls2 * mlp(norm2(x))`` on the
    ``(N, H*W, C)`` tokens, reshaped to maps inside; layer scale starts at 0.01."""

    def __init__(
        self,
        channels: int,
        attention_kernel_sizes: Sequence = _KERNEL_SIZES,
        attention_kernel_paddings: Sequence = _KERNEL_PADDINGS,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="SyncBN", requires_grad=True) if norm_cfg is None else norm_cfg
        self.norm1 = build_norm_layer(norm_cfg, channels)[1]
        self.attn = MSCASpatialAttention(
            channels, attention_kernel_sizes, attention_kernel_paddings, act_cfg
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, channels)[1]
        self.mlp = Mlp(channels, int(channels * mlp_ratio), act_cfg=act_cfg, drop=drop)
        self.layer_scale_1 = nn.Parameter(1e-2 * torch.ones(channels))
        self.layer_scale_2 = nn.Parameter(1e-2 * torch.ones(channels))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        x = x.permute(0, 2, 1).reshape(b, c, h, w)
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.attn(self.norm1(x)))
        x = x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)))
        return x.reshape(b, c, n).permute(0, 2, 1)


class OverlapPatchEmbed(BaseModule):
    """A strided conv (padding ``patch_size // 2``) and a norm; returns tokens and size."""

    def __init__(
        self,
        patch_size: int = 7,
        stride: int = 4,
        in_channels: int = 3,
        embed_dim: int = 768,
        norm_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="SyncBN", requires_grad=True) if norm_cfg is None else norm_cfg
        self.proj = nn.Conv2d(
            in_channels, embed_dim, kernel_size=patch_size, stride=stride,
            padding=patch_size // 2,
        )  # fmt: skip
        self.norm = build_norm_layer(norm_cfg, embed_dim)[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        _, _, h, w = x.shape
        return self.norm(x).flatten(2).transpose(1, 2), h, w


@MODELS.register_module()
class MSCAN(BaseModule):
    """SegNeXt's multi-scale convolutional attention network; returns the four stages'
    maps.

    ``embed_dims``, ``mlp_ratios`` and ``depths`` are per stage; ``attention_kernel_sizes``
    / ``attention_kernel_paddings`` give the 5x5 conv and the strip-conv branches.
    Without ``init_cfg``, weights start as MMSegmentation's (truncated normal for linear
    layers, fan-out normal for convs, ones/zeros for LayerNorms).
    """

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        depths: Sequence[int] = (3, 4, 6, 3),
        num_stages: int = 4,
        attention_kernel_sizes: Sequence = _KERNEL_SIZES,
        attention_kernel_paddings: Sequence = _KERNEL_PADDINGS,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="SyncBN", requires_grad=True) if norm_cfg is None else norm_cfg
        if init_cfg and pretrained:
            raise ValueError("MSCAN: give init_cfg or pretrained, not both")
        if isinstance(pretrained, str):
            warnings.warn(
                "MSCAN: pretrained is deprecated, use init_cfg=dict(type='Pretrained', "
                "checkpoint=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            self.init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        elif pretrained is not None:
            raise TypeError(f"MSCAN: pretrained must be a str or None, got {pretrained!r}")
        for name, value in (("embed_dims", embed_dims), ("mlp_ratios", mlp_ratios),
                            ("depths", depths)):  # fmt: skip
            if len(value) < num_stages:
                raise ValueError(
                    f"MSCAN: {name}={list(value)} needs an entry for each of the "
                    f"num_stages={num_stages} stages"
                )
        if len(attention_kernel_sizes) != len(attention_kernel_paddings):
            raise ValueError(
                f"MSCAN: attention_kernel_sizes {list(attention_kernel_sizes)} and "
                f"attention_kernel_paddings {list(attention_kernel_paddings)} differ in length"
            )
        self.depths, self.num_stages = depths, num_stages

        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths))]
        cur = 0
        for i in range(num_stages):
            if i == 0:
                # the stem takes 3 channels whatever in_channels says, as MMSegmentation's
                patch_embed: nn.Module = StemConv(3, embed_dims[0], norm_cfg=norm_cfg)
            else:
                patch_embed = OverlapPatchEmbed(
                    patch_size=3, stride=2, in_channels=embed_dims[i - 1],
                    embed_dim=embed_dims[i], norm_cfg=norm_cfg,
                )  # fmt: skip
            block = nn.ModuleList(
                MSCABlock(
                    channels=embed_dims[i],
                    attention_kernel_sizes=attention_kernel_sizes,
                    attention_kernel_paddings=attention_kernel_paddings,
                    mlp_ratio=mlp_ratios[i],
                    drop=drop_rate,
                    drop_path=dpr[cur + j],
                    act_cfg=act_cfg,
                    norm_cfg=norm_cfg,
                )
                for j in range(depths[i])
            )
            cur += depths[i]
            setattr(self, f"patch_embed{i + 1}", patch_embed)
            setattr(self, f"block{i + 1}", block)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i]))

    def init_weights(self) -> None:
        if self.init_cfg is not None:
            super().init_weights()
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_init(m, std=0.02, bias=0.0)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, val=1.0, bias=0.0)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                normal_init(m, mean=0, std=math.sqrt(2.0 / fan_out), bias=0)
        self._is_init = True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = x.shape[0]
        outs = []
        for i in range(1, self.num_stages + 1):
            x, h, w = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"block{i}"):
                x = blk(x, h, w)
            x = getattr(self, f"norm{i}")(x)
            x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs
