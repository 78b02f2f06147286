"""Between feature maps ``(N, C, H, W)`` and token sequences ``(N, L, C)`` (``L = H * W``),
the two layouts transformer backbones and heads pass between them."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def nlc_to_nchw(x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
    """``(N, H*W, C)`` tokens as an ``(N, C, H, W)`` map."""
    h, w = hw_shape
    n, length, c = x.shape
    if length != h * w:
        raise ValueError(f"{length} tokens do not make an {h}x{w} map")
    return x.transpose(1, 2).reshape(n, c, h, w).contiguous()


def nchw_to_nlc(x: torch.Tensor) -> torch.Tensor:
    """An ``(N, C, H, W)`` map as ``(N, H*W, C)`` tokens."""
    if x.dim() != 4:
        raise ValueError(f"expected an (N, C, H, W) map, got shape {tuple(x.shape)}")
    return x.flatten(2).transpose(1, 2).contiguous()
