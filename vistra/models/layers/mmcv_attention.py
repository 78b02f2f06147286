"""mmcv's ``MultiheadAttention`` (``mmcv.cnn.bricks.transformer``), computed with SDPA.

mmcv wraps ``torch.nn.MultiheadAttention`` in a module that adds the identity shortcut,
an output dropout and a ``dropout_layer`` (DropPath); MMSegmentation's transformers
(ViT, Segmenter, SETR, ...) are built from it, so their checkpoints hold
``attn.attn.in_proj_weight``, ``attn.attn.in_proj_bias``, ``attn.attn.out_proj.weight``
and ``attn.attn.out_proj.bias``. This module keeps exactly those parameters (the inner
``attn`` *is* an ``nn.MultiheadAttention``, for its names and its initialisation) but runs
the attention through ``F.scaled_dot_product_attention``, which picks a fused kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.drop import build_dropout


class MMCVMultiheadAttention(BaseModule):
    """``identity + dropout_layer(proj_drop(attention(query, key, value)))``.

    Arguments are mmcv's; ``bias`` (mmcv passes it on to ``nn.MultiheadAttention``) gives
    both the input and the output projection a bias. ``batch_first=False`` means
    ``(N, B, C)`` tensors. ``query_pos``/``key_pos`` are added to query/key (not value);
    ``attn_mask`` (bool: True = masked out, or additive float) and ``key_padding_mask``
    ``(B, S)`` (True = padding) follow ``nn.MultiheadAttention``.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dropout_layer: dict | None = dict(type="Dropout", drop_prob=0.0),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
        batch_first: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.embed_dims, self.num_heads, self.batch_first = embed_dims, num_heads, batch_first
        self.attn = nn.MultiheadAttention(embed_dims, num_heads, attn_drop, bias=bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dropout_layer = build_dropout(dropout_layer) if dropout_layer else nn.Identity()

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        identity: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
        key_pos: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        key = query if key is None else key
        value = key if value is None else value
        identity = query if identity is None else identity
        if key_pos is None and query_pos is not None and query_pos.shape == key.shape:
            key_pos = query_pos
        if query_pos is not None:
            query = query + query_pos
        if key_pos is not None:
            key = key + key_pos
        if not self.batch_first:  # (N, B, C) -> (B, N, C)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        out = self._attention(query, key, value, attn_mask, key_padding_mask)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return identity + self.dropout_layer(self.proj_drop(out))

    def _attention(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None,
        key_padding_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """``nn.MultiheadAttention``'s maths on ``(B, N, C)`` tensors, through SDPA."""
        mha = self.attn
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = (None,) * 3 if mha.in_proj_bias is None else mha.in_proj_bias.chunk(3)
        batch, heads = query.shape[0], self.num_heads

        def split(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
            return F.linear(x, w, b).unflatten(-1, (heads, -1)).transpose(1, 2)

        q, k, v = split(query, w_q, b_q), split(key, w_k, b_k), split(value, w_v, b_v)
        mask = _merge_masks(attn_mask, key_padding_mask, batch, q.dtype)
        drop = mha.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return mha.out_proj(out.transpose(1, 2).flatten(2))


def _merge_masks(
    attn_mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    batch: int,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """One additive SDPA mask from ``nn.MultiheadAttention``'s two (True = masked out)."""
    mask = None
    if attn_mask is not None:
        mask = _additive(attn_mask, dtype)
        if mask.dim() == 3:  # (B * heads, L, S)
            mask = mask.view(batch, -1, *mask.shape[-2:])
    if key_padding_mask is not None:
        pad = _additive(key_padding_mask, dtype)[:, None, None, :]
        mask = pad if mask is None else mask + pad
    return mask


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float("-inf")
        )
    return mask.to(dtype)
