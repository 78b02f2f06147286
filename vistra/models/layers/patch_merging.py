"""Patch merging (Swin's down-sampling between stages), as mmcv's / MMSegmentation's
``PatchMerging``.

Each ``kernel_size`` neighbourhood of the token map is gathered by ``nn.Unfold``, so the
merged vector is ordered channel-major: ``c * kh * kw + i * kw + j`` (not the original
Swin's ``x0, x1, x2, x3`` concatenation order); then ``norm`` (over the merged width) and
``reduction`` (a linear layer, no bias by default). Keys: ``norm.*``, ``reduction.weight``.
Published MMSegmentation / MMPretrain Swin checkpoints are stored in this order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import AdaptivePadding
from vistra.models.layers.pos_embed import to_2tuple


class PatchMerging(BaseModule):
    """``(B, H*W, in_channels)`` tokens to ``(B, h*w, out_channels)`` with the merged grid
    ``(h, w)``. A string ``padding`` (``'corner'`` / ``'same'``) pads the map first so
    that no pixel is dropped; an int pads inside the unfold."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] | str = "corner",
        dilation: int | tuple[int, int] = 1,
        bias: bool = False,
        norm_cfg: dict | None = dict(type="LN"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.in_channels, self.out_channels = in_channels, out_channels
        kernel = to_2tuple(kernel_size)
        stride_hw = to_2tuple(stride) if stride else kernel
        dilation_hw = to_2tuple(dilation)
        if isinstance(padding, str):
            self.adaptive_padding: AdaptivePadding | None = AdaptivePadding(
                kernel, stride_hw, dilation_hw, padding
            )
            pad_hw = (0, 0)
        else:
            self.adaptive_padding = None
            pad_hw = to_2tuple(padding)
        self.sampler = nn.Unfold(
            kernel_size=kernel, dilation=dilation_hw, padding=pad_hw, stride=stride_hw
        )
        sample_dim = kernel[0] * kernel[1] * in_channels
        self.norm = build_norm_layer(norm_cfg, sample_dim)[1] if norm_cfg is not None else None
        self.reduction = nn.Linear(sample_dim, out_channels, bias=bias)

    def forward(
        self, x: torch.Tensor, input_size: Sequence[int]
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        batch, length, channels = x.shape
        h, w = input_size
        if length != h * w:
            raise ValueError(f"PatchMerging: {length} tokens do not make an {h}x{w} map")
        x = x.view(batch, h, w, channels).permute(0, 3, 1, 2)
        if self.adaptive_padding is not None:
            x = self.adaptive_padding(x)
            h, w = x.shape[-2:]
        x = self.sampler(x).transpose(1, 2)  # (B, h'*w', C * kh * kw)
        s = self.sampler
        out_size = tuple(
            (size + 2 * p - d * (k - 1) - 1) // st + 1
            for size, p, d, k, st in zip((h, w), s.padding, s.dilation, s.kernel_size, s.stride)
        )
        if self.norm is not None:
            x = self.norm(x)
        return self.reduction(x), (int(out_size[0]), int(out_size[1]))
