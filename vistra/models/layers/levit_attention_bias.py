"""LeViT's attention bias (`LeViT <https://arxiv.org/abs/2104.01136>`_, section 4.2): one
learned scalar per head and per relative offset ``(|dy|, |dx|)`` between a query position
and a key position, added to the attention logits in place of a position embedding.

LeViT, EfficientFormer (its ``Meta3D`` blocks) and TinyViT (inside each window) use it.
The parameter is ``attention_biases`` ``(num_heads, num_offsets)`` and the table that
spreads it over the ``(queries, keys)`` logits is the integer buffer
``attention_bias_idxs``; offsets are numbered in the order they first occur when the query
positions and then the key positions are walked row by row, the order published
checkpoints store them in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.layers.pos_embed import to_2tuple


def attention_bias_index(resolution: int | tuple[int, int], stride: int = 1) -> torch.Tensor:
    """The ``(queries, keys)`` table of offset numbers for a ``resolution`` grid of keys.

    With ``stride > 1`` the queries are every ``stride``-th position of the grid in each
    direction (LeViT's shrinking attention), otherwise every position.
    """
    height, width = to_2tuple(resolution)
    if height < 1 or width < 1 or stride < 1:
        raise ValueError(
            f"attention bias: resolution {resolution!r} and stride {stride} must be positive"
        )
    key_y, key_x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    # the query grid keeps its positions in key coordinates (sub-grid index * stride)
    query_y = key_y[::stride, ::stride].reshape(-1, 1)  # (Nq, 1)
    query_x = key_x[::stride, ::stride].reshape(-1, 1)
    offset_y = (query_y - key_y.reshape(1, -1)).abs()  # (Nq, Nk)
    offset_x = (query_x - key_x.reshape(1, -1)).abs()
    codes = (offset_y * width + offset_x).flatten()
    unique, inverse = torch.unique(codes, return_inverse=True)
    # number the distinct offsets by first occurrence, not by value
    positions = torch.arange(codes.numel())
    first = torch.full((unique.numel(),), codes.numel(), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    rank = torch.empty_like(first)
    rank[first.argsort()] = torch.arange(unique.numel())
    return rank[inverse].view(offset_y.shape)


def register_attention_bias(
    module: nn.Module,
    num_heads: int,
    resolution: int | tuple[int, int],
    stride: int = 1,
    persistent: bool = True,
) -> None:
    """Give ``module`` the zero-initialised ``attention_biases`` parameter and its
    ``attention_bias_idxs`` table (``persistent=False`` keeps the table out of the
    state_dict, as TinyViT's checkpoints have it)."""
    index = attention_bias_index(resolution, stride)
    num_offsets = int(index.max()) + 1
    module.attention_biases = nn.Parameter(torch.zeros(num_heads, num_offsets))
    module.register_buffer("attention_bias_idxs", index, persistent=persistent)


def biased_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, module: nn.Module, scale: float
) -> torch.Tensor:
    """``softmax(q k^T * scale + bias) v`` for ``(B, heads, N, d)`` tensors, the bias being
    ``module``'s (registered by :func:`register_attention_bias`). The bias is gathered at
    every call, so it always reflects the current weights (a cache made at ``eval()``
    goes stale when weights are loaded afterwards)."""
    bias = module.attention_biases[:, module.attention_bias_idxs]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
