"""EVA-02 ViT backbone (``ViTEVA02``), `EVA-02: A Visual Representation for Neon Genesis
<https://arxiv.org/abs/2303.11331>`_, with MMPretrain's arguments and keys.

A ViT whose attention rotates the patch queries and keys by their 2-D position (RoPE; the
class token is not rotated) and whose MLP is SwiGLU, optionally with a LayerNorm on its
hidden units (``sub_ln``). Keys: the ViT's embeddings (``cls_token``, ``pos_embed``,
``patch_embed.projection``), ``rope.freqs_cos`` / ``rope.freqs_sin`` (the rotation of the
``img_size`` grid; the one module is shared by every layer, so the state dict lists it
again as ``layers.{i}.attn.rope.*``), ``layers.{i}.norm1``, ``layers.{i}.attn.qkv`` /
``attn.proj``, ``layers.{i}.norm2``, ``layers.{i}.mlp.w12`` / ``mlp.norm`` (``sub_ln``) /
``mlp.w3``, and ``ln1`` / ``ln2`` as the ViT's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.vision_transformer import (
    VisionTransformer,
    _arch,
    with_layer_defaults,
)
from vistra.models.base import BaseModule
from vistra.models.layers.drop import build_dropout
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.rope import RotaryEmbeddingFast
from vistra.models.layers.transformer import SwiGLUFFN
from vistra.registry import MODELS


class AttentionWithRoPE(BaseModule):
    """Multi-head self-attention with the patch queries and keys rotated by ``rope``
    (the first token, the class token with ``with_cls_token``, is left as it is)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        proj_bias: bool = True,
        rope: nn.Module | None = None,
        with_cls_token: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = qk_scale or self.head_dims**-0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.with_cls_token = with_cls_token
        self.rope = rope

    def forward(self, x: torch.Tensor, patch_resolution: tuple[int, int]) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.rope is not None:
            q, k = self._rotate(q, patch_resolution), self._rotate(k, patch_resolution)
        out = F.scaled_dot_product_attention(
            q.type_as(v),
            k.type_as(v),
            v,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out = out.transpose(1, 2).reshape(batch, tokens, -1)
        return self.proj_drop(self.proj(out))

    def _rotate(self, t: torch.Tensor, patch_resolution: tuple[int, int]) -> torch.Tensor:
        if not self.with_cls_token:
            return self.rope(t, patch_resolution)
        return torch.cat((t[:, :, :1], self.rope(t[:, :, 1:], patch_resolution)), dim=2)


class SubLNSwiGLUFFN(SwiGLUFFN):
    """``SwiGLUFFN`` with a norm of ``norm_cfg`` on the hidden units (``mlp.norm``) when
    ``norm_cfg`` is given (EVA-02's ``sub_ln``)."""

    def __init__(
        self,
        embed_dims: int,
        feedforward_channels: int | None = None,
        dropout_layer: dict | None = None,
        norm_cfg: dict | None = None,
        add_identity: bool = True,
    ) -> None:
        super().__init__(
            embed_dims,
            feedforward_channels=feedforward_channels,
            dropout_layer=dropout_layer,
            add_identity=add_identity,
        )
        if norm_cfg is not None:
            self.norm = build_norm_layer(norm_cfg, feedforward_channels or embed_dims)[1]


class EVA02EncoderLayer(BaseModule):
    """``x + drop_path(attn(norm1(x)))`` then ``x + drop_path(mlp(norm2(x)))``, the MLP a
    SwiGLU (with ``sub_ln``: normed hidden units, dropout ``drop_rate`` on its output)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        sub_ln: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        proj_bias: bool = True,
        rope: nn.Module | None = None,
        with_cls_token: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = AttentionWithRoPE(
            embed_dims=embed_dims,
            num_heads=num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            proj_bias=proj_bias,
            rope=rope,
            with_cls_token=with_cls_token,
        )
        self.drop_path = build_dropout(dict(type="DropPath", drop_prob=float(drop_path_rate)))
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = SubLNSwiGLUFFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            dropout_layer=dict(type="Dropout", drop_prob=drop_rate) if drop_rate > 0 else None,
            norm_cfg=norm_cfg if sub_ln else None,
            add_identity=False,
        )

    def forward(self, x: torch.Tensor, patch_resolution: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), patch_resolution))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@MODELS.register_module()
class ViTEVA02(VisionTransformer):
    """EVA-02; ``arch`` is a name of ``arch_zoo`` or a dict with ``embed_dims``,
    ``num_layers``, ``num_heads`` and ``feedforward_channels`` (the SwiGLU hidden width).

    ``attn_drop_rate`` / ``proj_drop_rate`` are the attention's dropouts, ``drop_rate``
    the position-embedding and MLP-output dropout; the other keyword arguments
    (``img_size``, ``patch_size``, ``out_type``, ``final_norm``, ``frozen_stages``, ...)
    are :class:`VisionTransformer`'s.
    """

    arch_zoo = {
        **dict.fromkeys(["t", "ti", "tiny"], _arch(192, 12, 3, int(192 * 4 * 2 / 3))),
        **dict.fromkeys(["s", "small"], _arch(384, 12, 6, int(384 * 4 * 2 / 3))),
        **dict.fromkeys(["b", "base"], _arch(768, 12, 12, int(768 * 4 * 2 / 3))),
        **dict.fromkeys(["l", "large"], _arch(1024, 24, 16, int(1024 * 4 * 2 / 3))),
    }

    def __init__(
        self,
        arch: str | dict = "tiny",
        sub_ln: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        norm_cfg: dict | None = None,
        with_cls_token: bool = True,
        layer_cfgs: dict | Sequence[dict] | None = None,
        **kwargs: Any,
    ) -> None:
        own = dict(
            sub_ln=sub_ln,
            attn_drop=attn_drop_rate,
            proj_drop=proj_drop_rate,
            with_cls_token=with_cls_token,
        )
        super().__init__(
            arch=arch,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias,
            norm_cfg=dict(type="LN") if norm_cfg is None else norm_cfg,
            with_cls_token=with_cls_token,
            layer_cfgs=with_layer_defaults(own, layer_cfgs),
            **kwargs,
        )
        self.num_heads = self.arch_settings["num_heads"]

    def _build_layers(
        self, layer_cfgs: dict | Sequence[dict] | None, drop_path_rate: float, **common: object
    ) -> nn.ModuleList:
        # one rotary embedding for the backbone, handed to every layer's attention
        head_dims = self.embed_dims // self.arch_settings["num_heads"]
        self.rope = RotaryEmbeddingFast(head_dims, self.patch_resolution)
        return super()._build_layers(layer_cfgs, drop_path_rate, **common)

    def _make_layer(self, index: int, args: dict) -> nn.Module:
        args.pop("layer_scale_init_value", None)  # EVA-02 layers have no layer scale
        args.setdefault("rope", self.rope)
        return EVA02EncoderLayer(**args)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, patch_resolution = self._embed(x)
        return self._encode(x, patch_resolution, patch_resolution=patch_resolution)
