"""MViTv2 backbone (`MViTv2: Improved Multiscale Vision Transformers for Classification
and Detection <https://arxiv.org/abs/2112.01526>`_), with MMPretrain's arguments and keys.

A plain sequence of ``num_layers`` multiscale blocks. Attention pools its queries, keys
and values with strided depthwise convs (each followed by a LayerNorm); at the blocks of
``downscale_indices`` the queries are pooled with stride 2 (the map halves, the width and
the head count double) while the key/value stride (``adaptive_kv_stride`` at first)
halves, so the key/value map keeps its size. MViTv2's additions are kept: a decomposed
relative position bias (``rel_pos_h`` / ``rel_pos_w``, added from the pooled queries) and
the residual pooling connection (``+ q``).

Keys: ``patch_embed.projection`` (7x7 stride 4, no norm); ``pos_embed`` with
``use_abs_pos_embed``; ``blocks.{i}.norm1``, ``.attn.qkv``, ``.attn.proj``,
``.attn.pool_{q,k,v}`` (bias-free depthwise convs), ``.attn.norm_{q,k,v}``,
``.attn.rel_pos_h`` / ``.attn.rel_pos_w`` (sized for ``img_size``, linearly resized to
the map at run time), ``.norm2``, ``.mlp.fc1``, ``.mlp.fc2``, ``.proj`` (where the width
changes); ``norm{s}`` for each scale of ``out_scales``.

Semantics kept from upstream: the normalised output of a scale in ``out_scales`` is also
what the following blocks take (the norm sits in the main path); stochastic depth grows
linearly over the blocks; the skip connection of a query-pooling block is max-pooled
(kernel ``stride + 1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import DropPath, build_activation_layer, build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.pos_embed import resize_pos_embed, to_2tuple
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS


def resize_decomposed_rel_pos(rel_pos: torch.Tensor, q_size: int, k_size: int) -> torch.Tensor:
    """``(q_size, k_size, C)`` embeddings of the offsets between ``q_size`` query and
    ``k_size`` key positions along one axis; ``rel_pos`` ``(L, C)`` is linearly resized to
    ``2 * max(q_size, k_size) - 1`` rows first when needed, and offsets are measured on
    the finer of the two grids."""
    length = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.t().unsqueeze(0), size=length, mode="linear")
        rel_pos = rel_pos.squeeze(0).t()
    q_ratio = max(k_size / q_size, 1.0)
    k_ratio = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * q_ratio
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * k_ratio
    offsets = (q_coords - k_coords) + (k_size - 1) * k_ratio
    return rel_pos[offsets.long()]


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    q_shape: Sequence[int],
    k_shape: Sequence[int],
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
) -> torch.Tensor:
    """``(B, heads, q_h*q_w, k_h*k_w)`` bias ``q . R_h[dy] + q . R_w[dx]`` for queries
    ``q`` ``(B, heads, q_h*q_w, C)``."""
    b, heads, _, c = q.shape
    q_h, q_w = q_shape
    k_h, k_w = k_shape
    r_h = resize_decomposed_rel_pos(rel_pos_h, q_h, k_h)  # (q_h, k_h, C)
    r_w = resize_decomposed_rel_pos(rel_pos_w, q_w, k_w)  # (q_w, k_w, C)
    r_q = q.reshape(b, heads, q_h, q_w, c)
    rel_h = torch.einsum("byhwc,hkc->byhwk", r_q, r_h)
    rel_w = torch.einsum("byhwc,wkc->byhwk", r_q, r_w)
    bias = rel_h[..., :, None] + rel_w[..., None, :]  # (B, heads, q_h, q_w, k_h, k_w)
    return bias.reshape(b, heads, q_h * q_w, k_h * k_w)


def attention_pool(
    x: torch.Tensor, pool: nn.Module, in_size: Sequence[int], norm: nn.Module | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pool ``(B, heads, L, C)`` or ``(B, L, C)`` tokens of an ``in_size`` map with
    ``pool`` (per head), then ``norm``; returns the tokens and the pooled map size."""
    if x.ndim not in (3, 4):
        raise ValueError(f"attention_pool takes (B, L, C) or (B, heads, L, C), got {x.shape}")
    squeeze = x.ndim == 3
    if squeeze:
        x = x.unsqueeze(1)
    b, heads, length, c = x.shape
    h, w = in_size
    if length != h * w:
        raise ValueError(f"attention_pool: {length} tokens do not make an {h}x{w} map")
    x = pool(x.reshape(b * heads, h, w, c).permute(0, 3, 1, 2))
    out_size = (int(x.shape[-2]), int(x.shape[-1]))
    x = x.reshape(b, heads, c, -1).transpose(2, 3)
    if norm is not None:
        x = norm(x)
    return (x.squeeze(1) if squeeze else x), out_size


class MLP(BaseModule):
    """``fc2(act(fc1(x)))``; unlike ``FFN`` the output width may differ from the input's."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | None = None,
        out_channels: int | None = None,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.fc1 = nn.Linear(in_channels, hidden_channels or in_channels)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Linear(hidden_channels or in_channels, out_channels or in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MultiScaleAttention(BaseModule):
    """Pooling attention: ``softmax(scale * q k^T + rel_pos_bias) v + q`` with ``q``, ``k``,
    ``v`` pooled (``stride_q`` / ``stride_kv``) and normalised per head."""

    def __init__(
        self,
        in_dims: int,
        out_dims: int,
        num_heads: int,
        qkv_bias: bool = True,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        pool_kernel: Sequence[int] = (3, 3),
        stride_q: int = 1,
        stride_kv: int = 1,
        rel_pos_spatial: bool = False,
        residual_pooling: bool = True,
        input_size: Sequence[int] | None = None,
        rel_pos_zero_init: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if out_dims % num_heads:
            raise ValueError(f"out_dims={out_dims} must be divisible by num_heads={num_heads}")
        self.num_heads, self.in_dims, self.out_dims = num_heads, in_dims, out_dims
        head_dim = out_dims // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(in_dims, out_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(out_dims, out_dims)
        padding = [k // 2 for k in pool_kernel]

        def pooling(stride: int) -> tuple[nn.Module, nn.Module]:
            conv = nn.Conv2d(head_dim, head_dim, tuple(pool_kernel), stride=stride,
                             padding=padding, groups=head_dim, bias=False)  # fmt: skip
            return conv, build_norm_layer(norm_cfg, head_dim)[1]

        self.pool_q, self.norm_q = pooling(stride_q)
        self.pool_k, self.norm_k = pooling(stride_kv)
        self.pool_v, self.norm_v = pooling(stride_kv)
        self.residual_pooling = residual_pooling
        self.rel_pos_spatial = rel_pos_spatial
        self.rel_pos_zero_init = rel_pos_zero_init
        if rel_pos_spatial:
            if input_size is None or input_size[0] != input_size[1]:
                raise ValueError(f"rel_pos_spatial needs a square input_size, got {input_size!r}")
            size = input_size[0]
            rel_dim = 2 * max(size // stride_q, size // stride_kv) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(rel_dim, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(rel_dim, head_dim))

    def init_weights(self) -> None:
        super().init_weights()
        if _is_pretrained(self.init_cfg):
            return
        if self.rel_pos_spatial and not self.rel_pos_zero_init:
            nn.init.trunc_normal_(self.rel_pos_h, std=0.02)
            nn.init.trunc_normal_(self.rel_pos_w, std=0.02)

    def forward(
        self, x: torch.Tensor, in_size: Sequence[int]
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, q_shape = attention_pool(q, self.pool_q, in_size, norm=self.norm_q)
        k, k_shape = attention_pool(k, self.pool_k, in_size, norm=self.norm_k)
        v, _ = attention_pool(v, self.pool_v, in_size, norm=self.norm_v)
        bias = None
        if self.rel_pos_spatial:
            bias = decomposed_rel_pos_bias(q, q_shape, k_shape, self.rel_pos_h, self.rel_pos_w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        if self.residual_pooling:
            out = out + q
        out = out.transpose(1, 2).reshape(b, -1, self.out_dims)
        return self.proj(out), q_shape


class MultiScaleBlock(BaseModule):
    """``x = skip(x) + drop_path(attn(norm1(x)))``, ``x = skip(x) + drop_path(mlp(norm2(x)))``
    where the skip is projected (``proj``) where the width changes (in the attention or
    in the MLP half, ``dim_mul_in_attention``) and max-pooled where the queries are."""

    def __init__(
        self,
        in_dims: int,
        out_dims: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        qkv_pool_kernel: Sequence[int] = (3, 3),
        stride_q: int = 1,
        stride_kv: int = 1,
        rel_pos_spatial: bool = True,
        residual_pooling: bool = True,
        dim_mul_in_attention: bool = True,
        input_size: Sequence[int] | None = None,
        rel_pos_zero_init: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.in_dims, self.out_dims = in_dims, out_dims
        self.dim_mul_in_attention = dim_mul_in_attention
        attn_dims = out_dims if dim_mul_in_attention else in_dims
        self.norm1 = build_norm_layer(norm_cfg, in_dims)[1]
        self.attn = MultiScaleAttention(
            in_dims, attn_dims, num_heads=num_heads, qkv_bias=qkv_bias, norm_cfg=norm_cfg,
            pool_kernel=qkv_pool_kernel, stride_q=stride_q, stride_kv=stride_kv,
            rel_pos_spatial=rel_pos_spatial, residual_pooling=residual_pooling,
            input_size=input_size, rel_pos_zero_init=rel_pos_zero_init,
        )  # fmt: skip
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, attn_dims)[1]
        self.mlp = MLP(attn_dims, int(attn_dims * mlp_ratio), out_dims, act_cfg=act_cfg)
        self.proj = nn.Linear(in_dims, out_dims) if in_dims != out_dims else None
        self.pool_skip: nn.Module | None = None
        self.init_out_size = None if input_size is None else list(to_2tuple(input_size))
        if stride_q > 1:
            kernel = stride_q + 1
            self.pool_skip = nn.MaxPool2d(kernel, stride_q, kernel // 2, ceil_mode=False)
            if input_size is not None:
                # upstream's bookkeeping (floor), which sizes the next relative positions
                self.init_out_size = [s // stride_q for s in to_2tuple(input_size)]

    def forward(
        self, x: torch.Tensor, in_size: Sequence[int]
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        x_norm = self.norm1(x)
        x_attn, out_size = self.attn(x_norm, in_size)
        skip = self.proj(x_norm) if self.dim_mul_in_attention and self.proj is not None else x
        if self.pool_skip is not None:
            skip, _ = attention_pool(skip, self.pool_skip, in_size)
        x = skip + self.drop_path(x_attn)
        x_norm = self.norm2(x)
        x_mlp = self.mlp(x_norm)
        skip = self.proj(x_norm) if not self.dim_mul_in_attention and self.proj is not None else x
        return skip + self.drop_path(x_mlp), out_size


@MODELS.register_module()
class MViT(BaseModule):
    """MMPretrain's MViTv2; arguments and keys in the module docstring.

    ``arch`` is a name of ``arch_zoo`` or a dict with ``embed_dims``, ``num_layers``,
    ``num_heads`` (of the first block) and ``downscale_indices``. Scale ``s`` is the output
    of the block before the ``s``-th downscaling (the last block for the last scale);
    ``out_scales`` (negative counting from the end) picks the scales returned, as
    normalised ``(B, C_s, H_s, W_s)`` maps.
    """

    arch_zoo = {
        "tiny": {"embed_dims": 96, "num_layers": 10, "num_heads": 1,
                 "downscale_indices": [1, 3, 8]},
        "small": {"embed_dims": 96, "num_layers": 16, "num_heads": 1,
                  "downscale_indices": [1, 3, 14]},
        "base": {"embed_dims": 96, "num_layers": 24, "num_heads": 1,
                 "downscale_indices": [2, 5, 21]},
        "large": {"embed_dims": 144, "num_layers": 48, "num_heads": 2,
                  "downscale_indices": [2, 8, 44]},
    }  # fmt: skip
    num_extra_tokens = 0

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int = 224,
        in_channels: int = 3,
        out_scales: int | Sequence[int] = -1,
        drop_path_rate: float = 0.0,
        use_abs_pos_embed: bool = False,
        interpolate_mode: str = "bicubic",
        pool_kernel: Sequence[int] = (3, 3),
        dim_mul: int = 2,
        head_mul: int = 2,
        adaptive_kv_stride: int = 4,
        rel_pos_spatial: bool = True,
        residual_pooling: bool = True,
        dim_mul_in_attention: bool = True,
        rel_pos_zero_init: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_cfg: dict = dict(type="LN", eps=1e-6),  # noqa: B006 (never mutated)
        patch_cfg: dict = dict(kernel_size=7, stride=4, padding=3),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if isinstance(arch, str):
            arch = arch.lower()
        self.arch_settings = pick_arch(
            arch, self.arch_zoo, "MViT", ("embed_dims", "num_layers", "num_heads",
                                          "downscale_indices"),
        )  # fmt: skip
        self.embed_dims = self.arch_settings["embed_dims"]
        self.num_layers = self.arch_settings["num_layers"]
        self.num_heads = self.arch_settings["num_heads"]
        self.downscale_indices = list(self.arch_settings["downscale_indices"])
        self.num_scales = len(self.downscale_indices) + 1
        self.stage_indices = {index - 1: i for i, index in enumerate(self.downscale_indices)}
        self.stage_indices[self.num_layers - 1] = self.num_scales - 1
        self.use_abs_pos_embed = use_abs_pos_embed
        self.interpolate_mode = interpolate_mode
        self.out_scales = self._parse_out_scales(out_scales)

        patch_args = dict(in_channels=in_channels, input_size=img_size,
                          embed_dims=self.embed_dims, conv_type="Conv2d")  # fmt: skip
        self.patch_embed = PatchEmbed(**{**patch_args, **patch_cfg})
        self.patch_resolution = self.patch_embed.init_out_size
        if use_abs_pos_embed:
            h, w = self.patch_resolution
            self.pos_embed = nn.Parameter(torch.zeros(1, h * w, self.embed_dims))

        rates = torch.linspace(0, drop_path_rate, self.num_layers, device="cpu").tolist()
        self.blocks = nn.ModuleList()
        dims, num_heads, stride_kv = self.embed_dims, self.num_heads, adaptive_kv_stride
        input_size = self.patch_resolution
        for i in range(self.num_layers):
            stride_q = 1
            if i in self.downscale_indices:
                num_heads *= head_mul
                stride_q = 2
                stride_kv = max(stride_kv // 2, 1)
            grows = i in self.downscale_indices if dim_mul_in_attention else (
                i + 1 in self.downscale_indices
            )  # fmt: skip
            out_dims = dims * dim_mul if grows else dims
            block = MultiScaleBlock(
                in_dims=dims, out_dims=out_dims, num_heads=num_heads, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, drop_path=rates[i], norm_cfg=norm_cfg,
                qkv_pool_kernel=pool_kernel, stride_q=stride_q, stride_kv=stride_kv,
                rel_pos_spatial=rel_pos_spatial, residual_pooling=residual_pooling,
                dim_mul_in_attention=dim_mul_in_attention, input_size=input_size,
                rel_pos_zero_init=rel_pos_zero_init,
            )  # fmt: skip
            self.blocks.append(block)
            input_size = block.init_out_size
            dims = out_dims
            scale = self.stage_indices.get(i)
            if scale is not None and scale in self.out_scales:
                self.add_module(f"norm{scale}", build_norm_layer(norm_cfg, out_dims)[1])

    def _parse_out_scales(self, out_scales: int | Sequence[int]) -> list[int]:
        if isinstance(out_scales, int):
            out_scales = [out_scales]
        if not isinstance(out_scales, Sequence) or not all(isinstance(i, int) for i in out_scales):
            raise TypeError(f"out_scales must be an int or a sequence of ints, got {out_scales!r}")
        parsed = []
        for index in out_scales:
            scale = self.num_scales + index if index < 0 else index
            if not 0 <= scale < self.num_scales:
                raise ValueError(
                    f"out_scales: {index} is not a scale of the {self.num_scales} "
                    f"(valid: {-self.num_scales}..{self.num_scales - 1})"
                )
            parsed.append(scale)
        return sorted(parsed)

    def init_weights(self) -> None:
        was_init = self.is_init
        super().init_weights()
        if was_init or _is_pretrained(self.init_cfg):
            return  # a loaded checkpoint keeps its position embedding
        if self.use_abs_pos_embed:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, patch_resolution = self.patch_embed(x)
        if self.use_abs_pos_embed:
            x = x + resize_pos_embed(
                self.pos_embed, self.patch_resolution, patch_resolution,
                mode=self.interpolate_mode, num_extra_tokens=self.num_extra_tokens,
            )  # fmt: skip
        outs = []
        for i, block in enumerate(self.blocks):
            x, patch_resolution = block(x, patch_resolution)
            scale = self.stage_indices.get(i)
            if scale is not None and scale in self.out_scales:
                b, _, c = x.shape
                # the normalised tokens go on into the next blocks too, as upstream's
                x = getattr(self, f"norm{scale}")(x)
                outs.append(x.transpose(1, 2).reshape(b, c, *patch_resolution).contiguous())
        return tuple(outs)


def _is_pretrained(init_cfg: object) -> bool:
    return isinstance(init_cfg, Mapping) and init_cfg.get("type") == "Pretrained"
