"""EdgeNeXt backbone (`EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for
Mobile Vision Applications <https://arxiv.org/abs/2206.10589>`_), with MMPretrain's
arguments and keys.

ConvNeXt's layout (a 4x4 patchify stem, four stages with norm + 2x2 conv downsampling
between them) whose stages use ConvNeXt blocks with growing depthwise kernels and end in
``global_blocks`` SDTA encoders: split depthwise convs over channel groups (each group
adding the previous group's output, Res2Net-style), cross-covariance attention across
channels (transposed attention, L2-normalised queries and keys, a learned temperature per
head), optional Fourier position encoding, and an inverted-bottleneck MLP.

Keys: ``downsample_layers.0.{0,1}`` (stem conv, norm), ``downsample_layers.{i}.{0,1}``
(norm, conv); ConvNeXt blocks ``stages.{i}.{j}.{gamma,depthwise_conv,norm,
pointwise_conv1,pointwise_conv2}``; SDTA encoders ``stages.{i}.{j}.{gamma_csa,gamma,
conv_modules.{k},pos_embed.proj,norm_csa,csa.{scale,qkv,proj},norm,pointwise_conv1,
pointwise_conv2}``; ``pos_embed.proj`` (``use_pos_embd_global``); ``norm{i}`` per output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.convnext import ConvNeXtBlock
from vistra.models.base import BaseModule
from vistra.models.layers import (
    DropPath,
    build_activation_layer,
    build_dropout,
    build_norm_layer,
)
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

GLOBAL_BLOCK_TYPES = ("None", "SDTA")


class PositionEncodingFourier(BaseModule):
    """Sine/cosine features of the normalised row and column of each position
    (``in_channels`` of each, DETR-style), projected by a 1x1 conv to ``embed_dims``."""

    def __init__(
        self,
        in_channels: int = 32,
        embed_dims: int = 768,
        temperature: float = 10000,
        dtype: torch.dtype = torch.float32,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.proj = nn.Conv2d(in_channels * 2, embed_dims, kernel_size=1)
        self.in_channels, self.embed_dims, self.dtype = in_channels, embed_dims, dtype
        # pairs of channels share a frequency: one takes the sine, the other the cosine
        pairs = torch.div(torch.arange(in_channels, dtype=dtype), 2, rounding_mode="floor")
        self.dim_t = temperature ** (2 * pairs / in_channels)

    def forward(self, bhw_shape: tuple[int, int, int]) -> torch.Tensor:
        batch, height, width = bhw_shape
        device = self.proj.weight.device
        eps, scale = 1e-6, 2 * math.pi
        rows = torch.arange(1, height + 1, dtype=self.dtype, device=device)
        cols = torch.arange(1, width + 1, dtype=self.dtype, device=device)
        y = (rows / (rows[-1] + eps) * scale).view(1, height, 1, 1).expand(batch, height, width, 1)
        x = (cols / (cols[-1] + eps) * scale).view(1, 1, width, 1).expand(batch, height, width, 1)
        dim_t = self.dim_t.to(device)
        pos_x, pos_y = x / dim_t, y / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
        return self.proj(pos.to(self.proj.weight.dtype))


class ChannelMultiheadAttention(BaseModule):
    """Attention across channels: per head, the ``head_dims x head_dims`` affinities of the
    L2-normalised (over tokens) queries and keys, times a learned per-head temperature
    (``qk_scale_type='learnable'``; ``'fixed'`` uses ``head_dims ** -0.5``, ``'none'``
    ``qk_scale``), weight the value channels."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        input_dims: int | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dropout_layer: dict | None = None,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        qk_scale_type: str = "learnable",
        qk_scale: float | None = None,
        v_shortcut: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.input_dims = input_dims or embed_dims
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.v_shortcut = v_shortcut
        self.head_dims = embed_dims // num_heads
        if qk_scale_type == "learnable":
            self.scale: nn.Parameter | float = nn.Parameter(torch.ones(num_heads, 1, 1))
        elif qk_scale_type == "fixed":
            self.scale = self.head_dims**-0.5
        elif qk_scale_type == "none":
            if qk_scale is None:
                raise ValueError("qk_scale_type='none' needs a qk_scale")
            self.scale = qk_scale
        else:
            raise ValueError(
                f"qk_scale_type must be 'learnable', 'fixed' or 'none', got {qk_scale_type!r}"
            )
        self.qkv = nn.Linear(self.input_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        # MMPretrain's default, dict(type='Dropout', drop_prob=0.), drops nothing
        self.out_drop = build_dropout(dropout_layer) if dropout_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dims)
        # (3, B, heads, head_dims, N): channels attend to channels
        q, k, v = qkv.permute(2, 0, 3, 4, 1).unbind(0)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        scale = self.scale
        if isinstance(scale, nn.Parameter):  # a tensor per head: folded into the queries
            q, scale = q * scale, 1.0
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=scale
        )
        out = out.permute(0, 3, 1, 2).reshape(batch, tokens, self.embed_dims)
        out = self.out_drop(self.proj_drop(self.proj(out)))
        if self.v_shortcut:
            out = v.transpose(-2, -1).squeeze(1) + out
        return out


class SDTAEncoder(BaseModule):
    """Split depth-wise transpose attention encoder: multi-scale depthwise convs over
    ``scales`` channel groups (the last group passes through), channel attention with a
    residual, then an inverted-bottleneck MLP with a residual over the whole block."""

    def __init__(
        self,
        in_channel: int,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        mlp_ratio: int = 4,
        use_pos_emb: bool = True,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        scales: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        if scales < 2:
            # the last group always passes through, so one group would leave no conv input
            raise ValueError(f"SDTAEncoder scales (d2_scales) must be >= 2, got {scales}")
        self.conv_channels = math.ceil(in_channel / scales)
        self.num_convs = scales - 1
        if math.ceil(in_channel / self.conv_channels) != scales:
            raise ValueError(
                f"SDTAEncoder: {in_channel} channels do not split into {scales} groups of "
                f"{self.conv_channels}; choose other d2_scales"
            )
        self.conv_modules = nn.ModuleList(
            nn.Conv2d(
                self.conv_channels, self.conv_channels, kernel_size=3, padding=1,
                groups=self.conv_channels,
            )
            for _ in range(self.num_convs)
        )  # fmt: skip
        self.pos_embed = PositionEncodingFourier(embed_dims=in_channel) if use_pos_emb else None
        self.norm_csa = build_norm_layer(norm_cfg, in_channel)[1]
        self.gamma_csa = (
            nn.Parameter(layer_scale_init_value * torch.ones(in_channel))
            if layer_scale_init_value > 0
            else None
        )
        self.csa = ChannelMultiheadAttention(
            embed_dims=in_channel, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
            proj_drop=proj_drop,
        )  # fmt: skip
        self.norm = build_norm_layer(norm_cfg, in_channel)[1]
        self.pointwise_conv1 = nn.Linear(in_channel, mlp_ratio * in_channel)
        self.act = build_activation_layer(act_cfg)
        self.pointwise_conv2 = nn.Linear(mlp_ratio * in_channel, in_channel)
        self.gamma = (
            nn.Parameter(layer_scale_init_value * torch.ones(in_channel))
            if layer_scale_init_value > 0
            else None
        )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def _multi_scale_conv(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(x, self.conv_channels, dim=1)
        outs, running = [], None
        for i, conv in enumerate(self.conv_modules):
            running = conv(groups[i] if running is None else running + groups[i])
            outs.append(running)
        return torch.cat((*outs, *groups[self.num_convs :]), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self._multi_scale_conv(x)
        batch, channels, height, width = x.shape
        x = x.reshape(batch, channels, height * width).transpose(1, 2)  # (B, N, C)
        if self.pos_embed is not None:
            pos = self.pos_embed((batch, height, width))
            x = x + pos.reshape(batch, channels, -1).transpose(1, 2)
        attn = self.csa(self.norm_csa(x))
        if self.gamma_csa is not None:
            attn = self.gamma_csa * attn
        x = (x + self.drop_path(attn)).reshape(batch, height, width, channels)
        x = self.pointwise_conv2(self.act(self.pointwise_conv1(self.norm(x))))
        if self.gamma is not None:
            x = self.gamma * x
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


def _as_list(name: str, value: Sequence, length: int) -> list:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) < length:
        raise ValueError(f"{name} must be a sequence of {length} entries, got {value!r}")
    return list(value)


@MODELS.register_module()
class EdgeNeXt(BaseModule):
    """EdgeNeXt backbone.

    ``arch`` is a name of ``arch_settings`` or a dict with ``channels``, ``depths`` and
    ``num_heads``. The per-stage lists (``global_blocks``, ``global_block_type``,
    ``conv_kernel_sizes``, ``use_pos_embd_csa``, ``d2_scales``) have one entry per stage;
    the last ``global_blocks[i]`` blocks of stage ``i`` are SDTA encoders. With
    ``gap_before_final_norm=True`` (classification) each output is globally averaged and
    LayerNorm-ed to ``(N, C)``, otherwise normalised by ``norm_cfg`` as a map.
    ``frozen_stages=n`` freezes the first ``n`` downsample layers and stages.
    """

    arch_settings = {
        "xxsmall": {
            "channels": [24, 48, 88, 168],
            "depths": [2, 2, 6, 2],
            "num_heads": [4, 4, 4, 4],
        },
        "xsmall": {
            "channels": [32, 64, 100, 192],
            "depths": [3, 3, 9, 3],
            "num_heads": [4, 4, 4, 4],
        },
        "small": {
            "channels": [48, 96, 160, 304],
            "depths": [3, 3, 9, 3],
            "num_heads": [8, 8, 8, 8],
        },
        "base": {
            "channels": [80, 160, 288, 584],
            "depths": [3, 3, 9, 3],
            "num_heads": [8, 8, 8, 8],
        },
    }

    def __init__(
        self,
        arch: str | dict = "xxsmall",
        in_channels: int = 3,
        global_blocks: Sequence[int] = (0, 1, 1, 1),
        global_block_type: Sequence[str] = ("None", "SDTA", "SDTA", "SDTA"),
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        linear_pw_conv: bool = True,
        mlp_ratio: int = 4,
        conv_kernel_sizes: Sequence[int] = (3, 5, 7, 9),
        use_pos_embd_csa: Sequence[bool] = (False, True, False, False),
        use_pos_embd_global: bool = False,
        d2_scales: Sequence[int] = (2, 2, 3, 4),
        norm_cfg: dict | None = dict(type="LN2d", eps=1e-6),  # noqa: B006 (never mutated)
        out_indices: int | Sequence[int] = -1,
        frozen_stages: int = 0,
        gap_before_final_norm: bool = True,
        act_cfg: dict | None = dict(type="GELU"),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        arch = self._parse_arch(arch)
        self.channels, self.depths = list(arch["channels"]), list(arch["depths"])
        self.num_heads = list(arch["num_heads"])
        self.num_stages = self.num_layers = len(self.depths)
        n = self.num_stages
        global_blocks = _as_list("global_blocks", global_blocks, n)
        conv_kernel_sizes = _as_list("conv_kernel_sizes", conv_kernel_sizes, n)
        use_pos_embd_csa = _as_list("use_pos_embd_csa", use_pos_embd_csa, n)
        d2_scales = _as_list("d2_scales", d2_scales, n)
        for kind in global_block_type:
            if kind not in GLOBAL_BLOCK_TYPES:
                raise ValueError(
                    f"global_block_type: {kind!r} is not one of {list(GLOBAL_BLOCK_TYPES)}"
                )
        self.out_indices = self._parse_out_indices(out_indices)
        self.frozen_stages = frozen_stages
        self.gap_before_final_norm = gap_before_final_norm
        self.use_pos_embd_global = use_pos_embd_global
        self.pos_embed = (
            PositionEncodingFourier(embed_dims=self.channels[0]) if use_pos_embd_global else None
        )
        # stochastic depth grows linearly over all blocks
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(self.depths))]
        self.downsample_layers = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(in_channels, self.channels[0], kernel_size=4, stride=4),
                    build_norm_layer(norm_cfg, self.channels[0])[1],
                )
            ]
        )
        self.stages = nn.ModuleList()
        block_idx = 0
        for i, (depth, channels) in enumerate(zip(self.depths, self.channels)):
            if i >= 1:
                self.downsample_layers.append(
                    nn.Sequential(
                        build_norm_layer(norm_cfg, self.channels[i - 1])[1],
                        nn.Conv2d(self.channels[i - 1], channels, kernel_size=2, stride=2),
                    )
                )
            blocks: list[nn.Module] = []
            for j in range(depth):
                if j >= depth - global_blocks[i]:  # the stage's last blocks are global
                    block: nn.Module = SDTAEncoder(
                        in_channel=channels, drop_path_rate=dpr[block_idx + j],
                        mlp_ratio=mlp_ratio, scales=d2_scales[i],
                        use_pos_emb=use_pos_embd_csa[i], num_heads=self.num_heads[i],
                    )  # fmt: skip
                else:
                    kernel = conv_kernel_sizes[i]
                    dw_conv_cfg = dict(kernel_size=kernel, padding=kernel // 2)
                    block = ConvNeXtBlock(
                        in_channels=channels, dw_conv_cfg=dw_conv_cfg,
                        norm_cfg=norm_cfg, act_cfg=act_cfg, linear_pw_conv=linear_pw_conv,
                        drop_path_rate=dpr[block_idx + j],
                        layer_scale_init_value=layer_scale_init_value,
                    )  # fmt: skip
                blocks.append(block)
            block_idx += depth
            self.stages.append(nn.Sequential(*blocks))
            if i in self.out_indices:
                out_norm_cfg = dict(type="LN") if gap_before_final_norm else norm_cfg
                self.add_module(f"norm{i}", build_norm_layer(out_norm_cfg, channels)[1])
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: str | dict) -> dict:
        if isinstance(arch, str):
            arch = arch.lower()
        keys = ("channels", "depths", "num_heads")
        arch = pick_arch(arch, cls.arch_settings, "EdgeNeXt", keys)
        lengths = {len(arch[k]) if isinstance(arch[k], Sequence) else -1 for k in keys}
        if len(lengths) != 1 or -1 in lengths:
            raise ValueError(
                f"arch {', '.join(keys)} must be sequences of the same length, "
                f"got {[arch[k] for k in keys]}"
            )
        return arch

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        parsed = []
        for index in out_indices:
            resolved = 4 + index if index < 0 else index  # MMPretrain counts from 4 stages
            if not 0 <= resolved < self.num_stages:
                raise ValueError(
                    f"out_indices: {index} is out of range for {self.num_stages} stages"
                )
            parsed.append(resolved)
        return parsed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(self.downsample_layers[i](x))
            if self.pos_embed is not None and i == 0:
                batch, _, height, width = x.shape
                x = x + self.pos_embed((batch, height, width))
            if i in self.out_indices:
                norm = getattr(self, f"norm{i}")
                if self.gap_before_final_norm:
                    outs.append(norm(x.mean([-2, -1])))
                else:
                    outs.append(norm(x).contiguous())
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            downsample, stage = self.downsample_layers[i], self.stages[i]
            downsample.eval()
            stage.eval()
            for param in chain(downsample.parameters(), stage.parameters()):
                param.requires_grad = False

    def train(self, mode: bool = True) -> EdgeNeXt:
        super().train(mode)
        self._freeze_stages()
        return self
