"""``CrissCrossAttention`` (`CCNet <https://arxiv.org/abs/1811.11721>`_), MMCV 2.x's pure
PyTorch form, and MMCV's ``Scale`` (a learnable scalar factor).

Keys: ``query_conv``, ``key_conv`` (``in_channels // 8`` outputs each), ``value_conv``,
``gamma.scale``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Scale(nn.Module):
    """Multiply the input by one learnable scalar (MMCV's ``Scale``; key ``scale``)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class CrissCrossAttention(nn.Module):
    """Each pixel attends to the pixels of its row and its column (one softmax over the
    ``H + W`` of them); the output is ``gamma * attended + x``, ``gamma`` starting at 0.

    The pixel itself lies on both its row and its column: its column energy is masked with
    ``-inf`` so that it is counted once, as MMCV does.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if in_channels < 8:
            raise ValueError(
                f"CrissCrossAttention in_channels must be >= 8 (query/key use "
                f"in_channels // 8 channels), got {in_channels}"
            )
        self.in_channels = in_channels
        self.query_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.key_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = Scale(0.0)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        query, key, value = self.query_conv(x), self.key_conv(x), self.value_conv(x)
        # column energies [B, W, H, H'] with the pixel itself masked, then as [B, H, W, H']
        self_mask = torch.diag(torch.full((h,), float("-inf"), device=x.device))
        energy_col = (torch.einsum("bchw,bciw->bwhi", query, key) + self_mask).transpose(1, 2)
        energy_row = torch.einsum("bchw,bchj->bhwj", query, key)  # [B, H, W, W']
        attn = F.softmax(torch.cat([energy_col, energy_row], dim=-1), dim=-1)
        out = torch.einsum("bciw,bhwi->bchw", value, attn[..., :h])
        out = out + torch.einsum("bchj,bhwj->bchw", value, attn[..., h:])
        return (self.gamma(out) + x).contiguous()
