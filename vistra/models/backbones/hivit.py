"""HiViT backbone, `HiViT: A Simple and More Efficient Design of Hierarchical Vision
Transformer <https://arxiv.org/abs/2205.14949>`_, with MMPretrain's arguments and keys.

Each 16x16 patch is embedded as a 4x4 grid of sub-patches (``inner_patches``) that MLP
blocks refine on their own, two patch merges halve the sub-grid while doubling the width,
and the main stage is a plain ViT (attention with an optional relative position bias) on
one token per patch. Keys:

- ``pos_embed`` ``(1, h*w, C)`` (``ape``), ``relative_position_index`` (``rpe``: a buffer
  of the patch grid, kept for checkpoints), ``patch_embed.proj`` / ``patch_embed.norm``
  (``patch_norm``);
- ``blocks.{i}``, in order: ``2 * depths[0]`` MLP blocks, a ``PatchMerge``
  (``norm``, ``reduction``), ``2 * depths[1]`` MLP blocks, a ``PatchMerge``, then
  ``depths[2]`` main blocks. A block has ``norm1``, ``attn.qkv`` / ``attn.proj`` /
  ``attn.relative_position_bias_table`` / ``attn.relative_position_index`` (main blocks;
  the bias with ``rpe``), ``norm2``, ``mlp.fc1`` / ``mlp.fc2`` and ``gamma_1`` /
  ``gamma_2`` with ``layer_scale_init_value > 0``.

As MMPretrain, ``out_indices`` index the MLP blocks before the main stage and the main
blocks alike, and its last entry is always the last main block; the relative position
bias fixes the input to the ``img_size`` grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.vision_transformer import _has_pretrained
from vistra.models.base import BaseModule
from vistra.models.layers.drop import DropPath
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.relative_position_bias import (
    gather_relative_position_bias,
    num_relative_distances,
    relative_position_index,
)
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

ARCH_KEYS = ("embed_dims", "depths", "num_heads")


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2 -> dropout``."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features or in_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features or in_features, out_features or in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class HiViTAttention(nn.Module):
    """Self-attention over the ``input_size x input_size`` patch tokens, with a learned
    relative position bias (``rpe``) and an optional key mask (masked image modelling)."""

    def __init__(
        self,
        input_size: int,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        rpe: bool = True,
    ) -> None:
        super().__init__()
        self.input_size, self.dim, self.num_heads = input_size, dim, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table: nn.Parameter | None = None
        if rpe:
            grid = (input_size, input_size)
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros(num_relative_distances(grid, with_cls_token=False), num_heads)
            )
            self.register_buffer(
                "relative_position_index", relative_position_index(grid, with_cls_token=False)
            )
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: torch.Tensor, rpe_index: bool | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``rpe_index`` (any non-None value) adds the relative position bias; ``mask``
        ``(B, N)`` keeps the keys where it is nonzero."""
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = None
        if rpe_index is not None:
            if self.relative_position_bias_table is None:
                raise ValueError("HiViT attention: a relative position bias needs rpe=True")
            if tokens != self.relative_position_index.shape[0]:
                raise ValueError(
                    f"HiViT: the relative position bias is sized for a {self.input_size}x"
                    f"{self.input_size} patch grid, got {tokens} tokens; give the backbone "
                    "the input size as img_size"
                )
            bias = gather_relative_position_bias(
                self.relative_position_bias_table, self.relative_position_index
            )[None].to(q.dtype)
        if mask is not None:
            blocked = torch.zeros(mask.shape, dtype=q.dtype, device=q.device)
            blocked = blocked.masked_fill(~mask.bool(), float("-inf"))[:, None, None, :]
            bias = blocked if bias is None else bias + blocked
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, tokens, channels)))


class BlockWithRPE(nn.Module):
    """``x + drop_path(gamma_1 * attn(norm1(x)))`` (main stage only: ``num_heads > 0``)
    then ``x + drop_path(gamma_2 * mlp(norm2(x)))``."""

    def __init__(
        self,
        input_size: int,
        dim: int,
        num_heads: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        rpe: bool = True,
        layer_scale_init_value: float = 0.0,
        norm_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.dim, self.num_heads, self.mlp_ratio = dim, num_heads, mlp_ratio
        with_attn = num_heads > 0
        self.norm1 = build_norm_layer(norm_cfg, dim)[1] if with_attn else None
        self.attn = (
            HiViTAttention(
                input_size,
                dim,
                num_heads=num_heads,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                attn_drop=attn_drop,
                proj_drop=drop,
                rpe=rpe,
            )
            if with_attn
            else None
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, dim)[1]
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), drop=drop)
        self.gamma_1: nn.Parameter | None = None
        self.gamma_2: nn.Parameter | None = None
        if layer_scale_init_value > 0:
            if with_attn:
                self.gamma_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(
        self, x: torch.Tensor, rpe_index: bool | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.attn is not None:
            attn = self.attn(self.norm1(x), rpe_index, mask)
            x = x + self.drop_path(attn if self.gamma_1 is None else self.gamma_1 * attn)
        mlp = self.mlp(self.norm2(x))
        return x + self.drop_path(mlp if self.gamma_2 is None else self.gamma_2 * mlp)


class HiViTPatchEmbed(nn.Module):
    """``(B, C, H, W)`` -> ``(B, h*w, inner, inner, embed_dim)``: a conv of stride
    ``patch_size // inner_patches`` whose outputs are grouped by the patch they lie in."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        inner_patches: int = 4,
        in_chans: int = 3,
        embed_dim: int = 128,
        norm_cfg: dict | None = None,
        kernel_size: int | tuple[int, int] | None = None,
        pad_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.inner_patches = inner_patches
        self.patches_resolution = [s // p for s, p in zip(self.img_size, self.patch_size)]
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_chans, self.embed_dim = in_chans, embed_dim
        conv_size = [p // inner_patches for p in self.patch_size]
        self.proj = nn.Conv2d(
            in_chans,
            embed_dim,
            kernel_size=kernel_size or conv_size,
            stride=conv_size,
            padding=pad_size or 0,
        )
        self.norm = build_norm_layer(norm_cfg, embed_dim)[1] if norm_cfg is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        h, w = height // self.patch_size[0], width // self.patch_size[1]
        inner = self.inner_patches
        x = self.proj(x).view(batch, -1, h, inner, w, inner)
        x = x.permute(0, 2, 4, 3, 5, 1).reshape(batch, h * w, inner, inner, -1)
        return self.norm(x) if self.norm is not None else x


class PatchMerge(nn.Module):
    """Each 2x2 group of sub-patches -> one of twice the width (``norm``, then the linear
    ``reduction``); a ``(B, N, C)`` input is read as a square grid of tokens."""

    def __init__(self, dim: int, norm_cfg: dict) -> None:
        super().__init__()
        self.norm = build_norm_layer(norm_cfg, dim * 4)[1]
        self.reduction = nn.Linear(dim * 4, dim * 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens_in = x.ndim == 3
        if tokens_in:
            batch, length, channels = x.shape
            side = int(math.sqrt(length))
            x = x.reshape(batch, side // 2, 2, side // 2, 2, channels)
            x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, -1, 2, 2, channels)
        parts = (
            x[..., 0::2, 0::2, :],
            x[..., 1::2, 0::2, :],
            x[..., 0::2, 1::2, :],
            x[..., 1::2, 1::2, :],
        )
        x = self.reduction(self.norm(torch.cat(parts, dim=-1)))
        return x[:, :, 0, 0, :] if tokens_in else x


@MODELS.register_module()
class HiViT(BaseModule):
    """HiViT; arguments and keys in the module docstring.

    ``arch``: a name of ``arch_zoo`` or a dict with exactly ``embed_dims`` (the main
    stage's width), ``depths`` (three stages) and ``num_heads``. ``forward`` returns the
    ``(B, C, h, w)`` map of each selected block. ``frozen_stages=n`` freezes the
    embeddings and the first ``n`` blocks.
    """

    arch_zoo = {
        **dict.fromkeys(["t", "tiny"], dict(embed_dims=384, depths=[1, 1, 10], num_heads=6)),
        **dict.fromkeys(["s", "small"], dict(embed_dims=384, depths=[2, 2, 20], num_heads=6)),
        **dict.fromkeys(["b", "base"], dict(embed_dims=512, depths=[2, 2, 24], num_heads=8)),
        **dict.fromkeys(["l", "large"], dict(embed_dims=768, depths=[2, 2, 40], num_heads=12)),
    }
    num_extra_tokens = 0

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        inner_patches: int = 4,
        in_chans: int = 3,
        stem_mlp_ratio: float = 3.0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        out_indices: Sequence[int] = (23,),
        ape: bool = True,
        rpe: bool = False,
        patch_norm: bool = True,
        frozen_stages: int = -1,
        kernel_size: int | None = None,
        pad_size: int | None = None,
        layer_scale_init_value: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        arch = arch.lower() if isinstance(arch, str) else arch
        if isinstance(arch, dict) and set(arch) != set(ARCH_KEYS):
            raise ValueError(f"a custom HiViT arch must have exactly the keys {ARCH_KEYS}")
        self.arch_settings = pick_arch(arch, self.arch_zoo, "HiViT", ARCH_KEYS)
        self.embed_dims = self.arch_settings["embed_dims"]
        self.depths = list(self.arch_settings["depths"])
        self.num_heads = self.arch_settings["num_heads"]
        self.num_stages = len(self.depths)
        self.ape, self.rpe = ape, rpe
        self.patch_size = patch_size
        self.num_features = self.embed_dims
        self.mlp_ratio = mlp_ratio
        self.num_main_blocks = self.depths[-1]
        self.out_indices = self._parse_out_indices(out_indices)

        embed_dim = self.embed_dims // 2 ** (self.num_stages - 1)
        self.patch_embed = HiViTPatchEmbed(
            img_size=img_size,
            patch_size=patch_size,
            inner_patches=inner_patches,
            in_chans=in_chans,
            embed_dim=embed_dim,
            norm_cfg=norm_cfg if patch_norm else None,
            kernel_size=kernel_size,
            pad_size=pad_size,
        )
        hp, wp = self.patch_embed.patches_resolution
        if rpe and hp != wp:
            raise ValueError(f"HiViT: rpe=True needs a square patch grid, got {hp}x{wp}")
        self.pos_embed: nn.Parameter | None = None
        if ape:
            self.pos_embed = nn.Parameter(
                torch.zeros(1, self.patch_embed.num_patches, self.num_features)
            )
        if rpe:
            self.register_buffer(
                "relative_position_index", relative_position_index((hp, wp), with_cls_token=False)
            )
        self.pos_drop = nn.Dropout(p=drop_rate)

        total = sum(self.depths) + sum(self.depths[:-1])  # stem stages hold 2 blocks a depth
        rates = iter(torch.linspace(0, drop_path_rate, total, device="cpu").tolist())
        self.blocks = nn.ModuleList()
        for stage, depth in enumerate(self.depths):
            main = embed_dim == self.num_features
            for _ in range(depth if main else 2 * depth):
                self.blocks.append(
                    BlockWithRPE(
                        hp,
                        embed_dim,
                        num_heads=self.num_heads if main else 0,
                        mlp_ratio=mlp_ratio if main else stem_mlp_ratio,
                        qkv_bias=qkv_bias,
                        qk_scale=qk_scale,
                        drop=drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=next(rates),
                        rpe=rpe,
                        norm_cfg=norm_cfg,
                        layer_scale_init_value=layer_scale_init_value,
                    )
                )
            if stage + 1 < self.num_stages:
                self.blocks.append(PatchMerge(embed_dim, norm_cfg))
                embed_dim *= 2

        self.frozen_stages = frozen_stages
        if frozen_stages > 0:
            self._freeze_stages()

    def _parse_out_indices(self, out_indices: Sequence[int]) -> list[int]:
        if isinstance(out_indices, int) or not isinstance(out_indices, Sequence):
            raise TypeError(f"HiViT: out_indices must be a sequence of ints, got {out_indices!r}")
        if not out_indices or not all(isinstance(i, int) and i >= 0 for i in out_indices):
            raise ValueError(
                f"HiViT: out_indices must be non-negative block indices, got {out_indices!r}"
            )
        # as upstream: the last entry always selects the last main block
        return [*out_indices[:-1], self.num_main_blocks - 1]

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """Upstream's: truncated-normal (0.02) linears, position embedding and bias
        tables, zero biases, unit LayerNorms; then ``init_cfg``."""
        if self.is_init:
            return
        if not _has_pretrained(self.init_cfg):
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
                elif isinstance(module, HiViTAttention):
                    if module.relative_position_bias_table is not None:
                        nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)
            if self.pos_embed is not None:
                nn.init.trunc_normal_(self.pos_embed, std=0.02)
        super().init_weights()

    # ------------------------------------------------------------------ freezing
    def _freeze_stages(self) -> None:
        # (upstream's also freezes a `fc_norm` it never builds, and fails)
        frozen: list[nn.Module] = [self.pos_drop, self.patch_embed]
        frozen += list(self.blocks[: self.frozen_stages])
        if self.pos_embed is not None:
            self.pos_embed.requires_grad = False
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> HiViT:
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self._freeze_stages()
        return self

    # ------------------------------------------------------------------ forward
    def interpolate_pos_encoding(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The position embedding for an ``h x w`` input, bicubically resized by scale
        factor (DINO's way, with its +0.1 against rounding) when the grid differs."""
        length = self.pos_embed.shape[1]
        if x.shape[1] == length and w == h:
            return self.pos_embed
        side = int(math.sqrt(length))
        h0, w0 = h // self.patch_size + 0.1, w // self.patch_size + 0.1
        grid = self.pos_embed.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid, scale_factor=(h0 / math.sqrt(length), w0 / math.sqrt(length)), mode="bicubic"
        )
        if grid.shape[-2:] != (int(h0), int(w0)):
            raise ValueError(f"HiViT: cannot fit the position embedding to a {h}x{w} input")
        return grid.permute(0, 2, 3, 1).reshape(1, -1, grid.shape[1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch, _, height, width = x.shape
        hp, wp = height // self.patch_size, width // self.patch_size
        x = self.patch_embed(x)
        outs = []
        for i, block in enumerate(self.blocks[: -self.num_main_blocks]):
            x = block(x)
            if i in self.out_indices:  # (B, h*w, s, s, C) -> (B, C, h*s, w*s)
                s_h, s_w, channels = x.shape[-3:]
                feat = x.reshape(batch, hp, wp, s_h, s_w, channels).permute(0, 5, 1, 3, 2, 4)
                outs.append(feat.reshape(batch, channels, hp * s_h, wp * s_w).contiguous())
        x = x[..., 0, 0, :]
        if self.pos_embed is not None:
            x = x + self.interpolate_pos_encoding(x, height, width)
        x = self.pos_drop(x)
        rpe_index = True if self.rpe else None
        for i, block in enumerate(self.blocks[-self.num_main_blocks :]):
            x = block(x, rpe_index)
            if i in self.out_indices:
                outs.append(x.transpose(1, 2).reshape(batch, -1, hp, wp).contiguous())
        return tuple(outs)

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """As upstream's: the embeddings are depth 0 and every other parameter the last
        depth (its check for ``layers.*`` never meets HiViT's ``blocks.*``)."""
        num_depths = len(self.blocks) + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix) :]
        if name == "pos_embed" or name.startswith("patch_embed"):
            return 0, num_depths
        return num_depths - 1, num_depths
