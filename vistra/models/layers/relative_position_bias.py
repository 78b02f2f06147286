"""Learned relative position bias over a patch grid (BEiT, HiViT; `Swin
<https://arxiv.org/abs/2103.14030>`_-style tables).

A table holds one learned value per head for every 2-D offset ``(dy, dx)`` between two
patches of a ``Wh x Ww`` grid, ``(2Wh - 1)(2Ww - 1)`` rows; with a class token three rows
more (class to patch, patch to class, class to class). ``relative_position_index`` maps
each (query, key) pair to its row, so the bias of an attention map is
``table[index]``, shaped ``(heads, N, N)`` and added to the logits before the softmax:
that is the ``attn_mask`` of ``F.scaled_dot_product_attention``.

The index with the class token and the resizing of a pretrained table to another grid
are MMSegmentation's BEiT's (``vistra.models.backbones.beit_mmseg``), reused here; MMPretrain
computes the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.backbones.beit_mmseg import (
    relative_position_index as _index_with_cls_token,
)
from vistra.models.backbones.beit_mmseg import (
    resize_relative_position_bias_table as resize_square_table,
)

__all__ = [
    "RelativePositionBias",
    "gather_relative_position_bias",
    "num_relative_distances",
    "relative_position_index",
    "resize_relative_position_bias_table",
]

CLS_TOKEN_ROWS = 3  # class->patch, patch->class, class->class


def num_relative_distances(window_size: Sequence[int], with_cls_token: bool = True) -> int:
    """Rows of the bias table of a ``(Wh, Ww)`` grid."""
    wh, ww = window_size
    return (2 * wh - 1) * (2 * ww - 1) + (CLS_TOKEN_ROWS if with_cls_token else 0)


def relative_position_index(
    window_size: Sequence[int], with_cls_token: bool = True
) -> torch.Tensor:
    """``(N, N)`` table rows of every (query, key) pair, ``N = Wh*Ww (+ 1)``: patch pairs
    take row ``(dy + Wh - 1) * (2Ww - 1) + dx + Ww - 1``, patches in row-major order; with
    the class token (token 0) its pairs take the last three rows."""
    window_size = tuple(int(s) for s in window_size)
    if with_cls_token:
        return _index_with_cls_token(window_size)
    return _index_with_cls_token(window_size)[1:, 1:].contiguous()


def gather_relative_position_bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The ``(heads, N, N)`` bias of a ``(rows, heads)`` table for an ``(N, N)`` index."""
    n = index.shape[0]
    return table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)


def resize_relative_position_bias_table(
    table: torch.Tensor, window_size: Sequence[int]
) -> torch.Tensor:
    """A pretrained table (with the three class-token rows) of another square grid, resized
    for ``window_size`` by the geometric-spacing bicubic interpolation BEiT checkpoints are
    fine-tuned with; the class-token rows are kept as they are."""
    rows = num_relative_distances(window_size, with_cls_token=True)
    if table.shape[0] == rows:
        return table
    return resize_square_table(table, rows, window_size)


class RelativePositionBias(nn.Module):
    """A bias table shared by all layers of a backbone (BEiT's ``use_shared_rel_pos_bias``).

    Keys ``relative_position_bias_table`` ``(rows, num_heads)`` and
    ``relative_position_index`` (a buffer); ``forward()`` gives the ``(num_heads, N, N)``
    bias.
    """

    def __init__(
        self, window_size: Sequence[int], num_heads: int, with_cls_token: bool = True
    ) -> None:
        super().__init__()
        self.window_size = tuple(window_size)
        self.with_cls_token = with_cls_token
        self.num_relative_distance = num_relative_distances(self.window_size, with_cls_token)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(self.num_relative_distance, num_heads)
        )
        self.register_buffer(
            "relative_position_index", relative_position_index(self.window_size, with_cls_token)
        )

    def forward(self) -> torch.Tensor:
        return gather_relative_position_bias(
            self.relative_position_bias_table, self.relative_position_index
        )
