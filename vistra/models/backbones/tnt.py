"""Transformer in Transformer (`Transformer in Transformer <https://arxiv.org/abs/2103.00112>`_),
with MMPretrain's arguments and keys.

Model-family file, in the order: transformer block, TNT layer, pixel embedding, backbone.

Layout: each 16x16 patch is a "sentence" of ``(16 / first_stride)^2`` "pixel" tokens (a
7x7 conv of stride ``first_stride`` then an unfold); every layer runs an inner transformer
block over the pixels of each patch, adds their (normed, flattened, projected) result to
the patch tokens and runs an outer transformer block over the patch tokens and a class
token. The attention blocks are mmcv's ``MultiheadAttention`` (``nn.MultiheadAttention``
parameters), run through SDPA.

Keys: ``cls_token``, ``patch_pos``, ``pixel_pos``, ``pixel_embed.proj``, ``norm1_proj``,
``projection``, ``norm2_proj``, ``layers.{i}.inner_block`` / ``outer_block`` (each
``norm_attn``, ``attn.attn.{in_proj_weight,in_proj_bias,out_proj}``, ``norm_ffn``,
``ffn.layers.0.0``, ``ffn.layers.1``), ``layers.{i}.norm_proj`` / ``projection``, ``norm``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.mmcv_attention import MMCVMultiheadAttention
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="TruncNormal", layer="Linear", std=0.02),
    dict(type="Constant", layer="LayerNorm", val=1.0, bias=0.0),
]


def _arch(outer: int, inner: int, layers: int, heads_outer: int, heads_inner: int) -> dict:
    return dict(
        embed_dims_outer=outer,
        embed_dims_inner=inner,
        num_layers=layers,
        num_heads_outer=heads_outer,
        num_heads_inner=heads_inner,
    )


class TransformerBlock(BaseModule):
    """``x + attn(norm_attn(x))`` then ``x + ffn(norm_ffn(x))``, both with stochastic
    depth; ``qkv_bias=False`` drops the input projection's bias (the output keeps its)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        ffn_ratio: int = 4,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = False,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        batch_first: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        drop_path = dict(type="DropPath", drop_prob=float(drop_path_rate))
        self.norm_attn = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = MMCVMultiheadAttention(
            embed_dims=embed_dims,
            num_heads=num_heads,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            dropout_layer=drop_path,
            batch_first=batch_first,
        )
        if not qkv_bias:
            self.attn.attn.in_proj_bias = None  # unregisters it: no key, no bias
        self.norm_ffn = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=embed_dims * ffn_ratio,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            dropout_layer=drop_path,
            act_cfg=act_cfg,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm_attn(x), identity=x)
        return self.ffn(self.norm_ffn(x), identity=x)


class TnTLayer(BaseModule):
    """An inner block over the pixels of each patch, their projection added to the patch
    tokens (not to the class token), then an outer block over the patch tokens."""

    def __init__(
        self,
        num_pixel: int,
        embed_dims_inner: int,
        embed_dims_outer: int,
        num_heads_inner: int,
        num_heads_outer: int,
        inner_block_cfg: dict | None = None,
        outer_block_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.inner_block = TransformerBlock(
            embed_dims=embed_dims_inner, num_heads=num_heads_inner, **(inner_block_cfg or {})
        )
        self.norm_proj = build_norm_layer(norm_cfg, embed_dims_inner)[1]
        self.projection = nn.Linear(embed_dims_inner * num_pixel, embed_dims_outer, bias=True)
        self.outer_block = TransformerBlock(
            embed_dims=embed_dims_outer, num_heads=num_heads_outer, **(outer_block_cfg or {})
        )

    def forward(
        self, pixel_embed: torch.Tensor, patch_embed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pixel_embed = self.inner_block(pixel_embed)
        batch, tokens, _ = patch_embed.shape
        pixels = self.projection(self.norm_proj(pixel_embed).reshape(batch, tokens - 1, -1))
        patch_embed = torch.cat([patch_embed[:, :1], patch_embed[:, 1:] + pixels], dim=1)
        return pixel_embed, self.outer_block(patch_embed)


class PixelEmbed(BaseModule):
    """Image -> ``(B * num_patches, pixels per patch, embed_dims_inner)`` pixel tokens: a
    7x7 conv of stride ``stride``, cut into ``ceil(patch / stride)`` squares by an unfold;
    ``pixel_pos`` (one embedding per pixel position of a patch) is added."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        embed_dims_inner: int = 48,
        stride: int = 4,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.img_size = to_2tuple(img_size)
        patch_hw = to_2tuple(patch_size)
        self.num_patches = (self.img_size[0] // patch_hw[0]) * (self.img_size[1] // patch_hw[1])
        self.embed_dims_inner = embed_dims_inner
        self.new_patch_size = [math.ceil(p / stride) for p in patch_hw]
        self.proj = nn.Conv2d(
            in_channels, embed_dims_inner, kernel_size=7, padding=3, stride=stride
        )
        self.unfold = nn.Unfold(kernel_size=self.new_patch_size, stride=self.new_patch_size)

    def forward(self, x: torch.Tensor, pixel_pos: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        if (height, width) != self.img_size:
            raise ValueError(
                f"TNT takes inputs of its img_size {self.img_size}, got ({height}, {width}); "
                "build it with img_size set to the input size"
            )
        batch = x.shape[0]
        x = self.unfold(self.proj(x)).transpose(1, 2)  # (B, patches, C * p * p)
        x = x.reshape(batch * self.num_patches, self.embed_dims_inner, *self.new_patch_size)
        x = x + pixel_pos
        return x.flatten(2).transpose(1, 2)


@MODELS.register_module()
class TNT(BaseModule):
    """TNT backbone: pixel embedding, ``num_layers`` TNT layers, a final norm; returns
    ``(class token,)``, ``(B, embed_dims_outer)``.

    ``arch`` is a name of ``arch_zoo`` or a dict with ``embed_dims_outer``,
    ``embed_dims_inner``, ``num_layers``, ``num_heads_outer`` and ``num_heads_inner``. The
    input must be ``img_size``: the patch position embedding is learned for that grid.
    Stochastic depth rises linearly to ``drop_path_rate`` over the layers.
    """

    arch_zoo = {
        **dict.fromkeys(["s", "small"], _arch(384, 24, 12, 6, 4)),
        **dict.fromkeys(["b", "base"], _arch(640, 40, 12, 10, 4)),
    }

    def __init__(
        self,
        arch: str | dict = "b",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        ffn_ratio: int = 4,
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        first_stride: int = 4,
        num_fcs: int = 2,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        key = arch.lower() if isinstance(arch, str) else arch
        self.arch_settings = pick_arch(key, self.arch_zoo, "TNT", _arch(0, 0, 0, 0, 0))
        self.embed_dims_inner = self.arch_settings["embed_dims_inner"]
        self.embed_dims_outer = self.embed_dims = self.arch_settings["embed_dims_outer"]
        self.num_layers = self.arch_settings["num_layers"]
        self.num_heads_inner = self.arch_settings["num_heads_inner"]
        self.num_heads_outer = self.arch_settings["num_heads_outer"]

        self.pixel_embed = PixelEmbed(
            img_size=img_size, patch_size=patch_size, in_channels=in_channels,
            embed_dims_inner=self.embed_dims_inner, stride=first_stride,
        )  # fmt: skip
        self.num_patches = num_patches = self.pixel_embed.num_patches
        new_patch_size = self.pixel_embed.new_patch_size
        num_pixel = new_patch_size[0] * new_patch_size[1]
        self.norm1_proj = build_norm_layer(norm_cfg, num_pixel * self.embed_dims_inner)[1]
        self.projection = nn.Linear(num_pixel * self.embed_dims_inner, self.embed_dims_outer)
        self.norm2_proj = build_norm_layer(norm_cfg, self.embed_dims_outer)[1]

        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims_outer))
        self.patch_pos = nn.Parameter(torch.zeros(1, num_patches + 1, self.embed_dims_outer))
        self.pixel_pos = nn.Parameter(torch.zeros(1, self.embed_dims_inner, *new_patch_size))
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        rates = torch.linspace(0, drop_path_rate, self.num_layers, device="cpu").tolist()
        self.layers = nn.ModuleList()
        for rate in rates:
            block_cfg = dict(
                ffn_ratio=ffn_ratio, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                drop_path_rate=rate, num_fcs=num_fcs, qkv_bias=qkv_bias, act_cfg=act_cfg,
                norm_cfg=norm_cfg, batch_first=True,
            )  # fmt: skip
            self.layers.append(
                TnTLayer(
                    num_pixel=num_pixel,
                    embed_dims_inner=self.embed_dims_inner,
                    embed_dims_outer=self.embed_dims_outer,
                    num_heads_inner=self.num_heads_inner,
                    num_heads_outer=self.num_heads_outer,
                    inner_block_cfg=block_cfg,
                    outer_block_cfg=block_cfg,
                    norm_cfg=norm_cfg,
                )
            )
        self.norm = build_norm_layer(norm_cfg, self.embed_dims_outer)[1]
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        for param in (self.cls_token, self.patch_pos, self.pixel_pos):
            nn.init.trunc_normal_(param, std=0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        batch = x.shape[0]
        pixel_embed = self.pixel_embed(x, self.pixel_pos)
        patch_embed = pixel_embed.reshape(batch, self.num_patches, -1)
        patch_embed = self.norm2_proj(self.projection(self.norm1_proj(patch_embed)))
        patch_embed = torch.cat((self.cls_token.expand(batch, -1, -1), patch_embed), dim=1)
        patch_embed = self.drop_after_pos(patch_embed + self.patch_pos)
        for layer in self.layers:
            pixel_embed, patch_embed = layer(pixel_embed, patch_embed)
        return (self.norm(patch_embed)[:, 0],)
