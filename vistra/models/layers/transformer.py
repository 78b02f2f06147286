"""Transformer building blocks with MMPretrain / mmcv parameter names.

``MultiheadAttention`` (keys ``qkv``, ``proj``, ``gamma1``) and ``FFN`` (keys
``layers.0.0``, ``layers.1``, ``gamma2``) are the blocks every MMPretrain vision
transformer is made of; keeping their names is what lets published checkpoints load
strictly. Attention runs through ``F.scaled_dot_product_attention`` so torch picks the
fused kernel for the device. ``PatchEmbed`` and the position-embedding helpers live in
their own modules and are re-exported here for one import path.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.activation import build_activation_layer
from vistra.models.layers.drop import build_dropout
from vistra.models.layers.patch_embed import AdaptivePadding, PatchEmbed
from vistra.models.layers.pos_embed import build_2d_sincos_position_embedding, resize_pos_embed

__all__ = [
    "AdaptivePadding",
    "FFN",
    "LayerScale",
    "MultiheadAttention",
    "PatchEmbed",
    "SwiGLUFFN",
    "SwiGLUFFNFused",
    "build_2d_sincos_position_embedding",
    "resize_pos_embed",
]


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch (CaiT); parameter ``weight``."""

    def __init__(
        self,
        dim: int,
        layer_scale_init_value: float | torch.Tensor = 1e-5,
        inplace: bool = False,
        data_format: str = "channels_last",
    ) -> None:
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}"
            )
        self.inplace = inplace
        self.data_format = data_format
        self.weight = nn.Parameter(torch.ones(dim) * layer_scale_init_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.data_format == "channels_first":
            weight = weight.view(-1, *([1] * (x.ndim - 2)))
        return x.mul_(weight) if self.inplace else x * weight


class MultiheadAttention(BaseModule):
    """Multi-head self-attention over ``(B, N, C)`` tokens, as MMPretrain's.

    ``input_dims`` lets the tokens enter with another width than ``embed_dims``;
    ``v_shortcut`` adds the (single-head) values to the output, as T2T-ViT does. A positive
    ``layer_scale_init_value`` adds a LayerScale ``gamma1`` on the output.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        input_dims: int | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dropout_layer: dict | None = None,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        proj_bias: bool = True,
        v_shortcut: bool = False,
        use_layer_scale: bool = False,
        layer_scale_init_value: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads != 0:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        if v_shortcut and num_heads != 1:
            raise ValueError(f"v_shortcut=True needs num_heads=1, got num_heads={num_heads}")
        self.input_dims = input_dims or embed_dims
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.v_shortcut = v_shortcut
        self.head_dims = embed_dims // num_heads
        self.scale = qk_scale or self.head_dims**-0.5

        self.qkv = nn.Linear(self.input_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.out_drop = build_dropout(dropout_layer) if dropout_layer else nn.Identity()
        if use_layer_scale:
            warnings.warn(
                "MultiheadAttention(use_layer_scale=True) is deprecated: set "
                "layer_scale_init_value > 0 instead (1e-5 is used now)",
                DeprecationWarning,
                stacklevel=2,
            )
        if use_layer_scale or layer_scale_init_value > 0:
            self.gamma1: nn.Module = LayerScale(embed_dims, layer_scale_init_value or 1e-5)
        else:
            self.gamma1 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        out = out.transpose(1, 2).reshape(batch, tokens, self.embed_dims)
        out = self.out_drop(self.gamma1(self.proj_drop(self.proj(out))))
        if self.v_shortcut:
            out = v.squeeze(1) + out
        return out


class FFN(BaseModule):
    """Feed-forward block with identity shortcut, as mmcv's.

    ``num_fcs - 1`` blocks of ``Linear -> activation -> Dropout`` then ``Linear ->
    Dropout`` (keys ``layers.0.0`` ... ``layers.{num_fcs-1}``); ``dropout_layer`` (usually
    DropPath) applies to the branch before it is added to ``identity``.
    """

    def __init__(
        self,
        embed_dims: int = 256,
        feedforward_channels: int = 1024,
        num_fcs: int = 2,
        act_cfg: dict | None = None,
        ffn_drop: float = 0.0,
        dropout_layer: dict | None = None,
        add_identity: bool = True,
        init_cfg: dict | list[dict] | None = None,
        layer_scale_init_value: float = 0.0,
    ) -> None:
        super().__init__(init_cfg)
        if num_fcs < 2:
            raise ValueError(f"FFN needs num_fcs >= 2, got {num_fcs}")
        act_cfg = dict(type="ReLU", inplace=True) if act_cfg is None else act_cfg
        self.embed_dims = embed_dims
        self.feedforward_channels = feedforward_channels
        self.num_fcs = num_fcs
        layers: list[nn.Module] = []
        in_channels = embed_dims
        for _ in range(num_fcs - 1):
            layers.append(
                nn.Sequential(
                    nn.Linear(in_channels, feedforward_channels),
                    build_activation_layer(act_cfg),
                    nn.Dropout(ffn_drop),
                )
            )
            in_channels = feedforward_channels
        layers.append(nn.Linear(feedforward_channels, embed_dims))
        layers.append(nn.Dropout(ffn_drop))
        self.layers = nn.Sequential(*layers)
        self.dropout_layer = build_dropout(dropout_layer) if dropout_layer else nn.Identity()
        self.add_identity = add_identity
        if layer_scale_init_value > 0:
            self.gamma2: nn.Module = LayerScale(embed_dims, layer_scale_init_value)
        else:
            self.gamma2 = nn.Identity()

    def forward(self, x: torch.Tensor, identity: torch.Tensor | None = None) -> torch.Tensor:
        out = self.gamma2(self.layers(x))
        if not self.add_identity:
            return self.dropout_layer(out)
        return (x if identity is None else identity) + self.dropout_layer(out)


class SwiGLUFFN(nn.Module):
    """SwiGLU feed-forward block (DINOv2); keys ``w12``, ``w3``, ``gamma2``."""

    def __init__(
        self,
        embed_dims: int,
        feedforward_channels: int | None = None,
        out_dims: int | None = None,
        layer_scale_init_value: float = 0.0,
        bias: bool = True,
        dropout_layer: dict | None = None,
        add_identity: bool = True,
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.out_dims = out_dims or embed_dims
        hidden_dims = feedforward_channels or embed_dims
        self.w12 = nn.Linear(embed_dims, 2 * hidden_dims, bias=bias)
        self.norm = nn.Identity()
        self.w3 = nn.Linear(hidden_dims, self.out_dims, bias=bias)
        if layer_scale_init_value > 0:
            self.gamma2: nn.Module = LayerScale(embed_dims, layer_scale_init_value)
        else:
            self.gamma2 = nn.Identity()
        self.dropout_layer = build_dropout(dropout_layer) if dropout_layer else nn.Identity()
        self.add_identity = add_identity

    def forward(self, x: torch.Tensor, identity: torch.Tensor | None = None) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        out = self.dropout_layer(self.gamma2(self.w3(self.norm(F.silu(gate) * value))))
        if self.out_dims != self.embed_dims or not self.add_identity:
            return out  # no residual when the widths differ or when asked not to
        return (x if identity is None else identity) + out


class SwiGLUFFNFused(SwiGLUFFN):
    """``SwiGLUFFN`` whose hidden width is 2/3 of ``feedforward_channels``, rounded up to a
    multiple of 8, so it costs as much as a GELU FFN of that width (DINOv2-giant)."""

    def __init__(
        self,
        embed_dims: int,
        feedforward_channels: int | None = None,
        out_dims: int | None = None,
        layer_scale_init_value: float = 0.0,
        bias: bool = True,
    ) -> None:
        hidden = feedforward_channels or embed_dims
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        super().__init__(
            embed_dims,
            feedforward_channels=hidden,
            out_dims=out_dims or embed_dims,
            layer_scale_init_value=layer_scale_init_value,
            bias=bias,
        )
