"""2-D rotary position embedding for patch tokens (RoPE, `RoFormer
<https://arxiv.org/abs/2104.09864>`_, in the 2-D form of EVA-02
<https://arxiv.org/abs/2303.11331>`_), with MMPretrain's ``RotaryEmbeddingFast`` buffers.

Each head's channels are split in halves: the first half takes its angles from the patch
row, the second from the patch column. Within a half of ``d`` channels the angle of channel
``j`` at position ``t`` is ``t' * f[j mod d/2]`` with ``f[i] = theta ** (-2i / d)`` and
``t' = t * d / size`` (positions scaled so that the grid spans ``d``), and the output is
``x * cos + rotate(x) * sin`` with ``rotate(x)[2i] = -x[2i+1]``, ``rotate(x)[2i+1] =
x[2i]``. (The frequencies are tiled, ``f0 f1 .. f0 f1 ..``, while the channels are paired
as neighbours, so the two channels of a pair see different angles: that is MMPretrain's
layout, which its EVA-02 checkpoints are evaluated with, and it is kept.)

Buffers ``freqs_cos`` / ``freqs_sin`` ``(h*w, head_dims)`` hold the angles of the
``patch_resolution`` grid (a checkpoint carries them); another grid's are computed for the
call and not stored, so the state dict keeps the shapes a checkpoint has.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.layers.pos_embed import to_2tuple


def rope_angles(
    head_dims: int, patch_resolution: Sequence[int], theta: float = 10000.0
) -> torch.Tensor:
    """The ``(h*w, head_dims)`` rotation angles of a patch grid, rows in row-major order."""
    half = head_dims // 2
    h, w = to_2tuple(patch_resolution)
    inv_freq = 1.0 / theta ** (torch.arange(0, half, 2).float() / half)
    rows = torch.outer(torch.arange(h) / h * half, inv_freq).repeat(1, 2)  # (h, half)
    cols = torch.outer(torch.arange(w) / w * half, inv_freq).repeat(1, 2)  # (w, half)
    grid = torch.cat(
        (rows[:, None, :].expand(h, w, half), cols[None, :, :].expand(h, w, half)), dim=-1
    )
    return grid.reshape(h * w, -1)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """``(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)`` along the last axis."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).reshape(x.shape)


class RotaryEmbeddingFast(nn.Module):
    """Rotates ``(B, heads, h*w, head_dims)`` queries or keys by their patch position."""

    def __init__(
        self, embed_dims: int, patch_resolution: int | Sequence[int], theta: float = 10000.0
    ) -> None:
        super().__init__()
        if embed_dims % 4 != 0:
            raise ValueError(
                f"RotaryEmbeddingFast: embed_dims (the head width) must be divisible by 4 for "
                f"a 2-D rotary embedding, got {embed_dims}"
            )
        self.half_dim = embed_dims // 2
        self.head_dims = embed_dims
        self.patch_resolution = to_2tuple(patch_resolution)
        self.theta = theta
        angles = rope_angles(embed_dims, self.patch_resolution, theta)
        self.register_buffer("freqs_cos", angles.cos())
        self.register_buffer("freqs_sin", angles.sin())

    def forward(self, x: torch.Tensor, patch_resolution: Sequence[int]) -> torch.Tensor:
        if to_2tuple(patch_resolution) == self.patch_resolution:
            cos, sin = self.freqs_cos, self.freqs_sin
        else:
            angles = rope_angles(self.head_dims, patch_resolution, self.theta).to(x.device)
            cos, sin = angles.cos(), angles.sin()
        return x * cos + rotate_pairs(x) * sin
