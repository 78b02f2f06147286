"""Absolute position embeddings for vision transformers.

``resize_pos_embed`` adapts a learned ``(1, L, C)`` embedding to another patch grid (a
different input size, or a checkpoint trained at another resolution), the way MMPretrain
does, so fine-tuned checkpoints give the same numbers. ``build_2d_sincos_position_embedding``
is the fixed MoCo v3 / MAE embedding; its token order is the one MMPretrain's MAE
checkpoints were saved with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

INTERPOLATE_MODES = ("nearest", "bilinear", "bicubic", "area", "nearest-exact")


def to_2tuple(value: int | Sequence[int]) -> tuple[int, int]:
    """``7 -> (7, 7)``; a pair is returned as a tuple; anything else is an error."""
    if isinstance(value, int):
        return (value, value)
    pair = tuple(value)
    if len(pair) != 2:
        raise ValueError(f"expected an int or a pair (h, w), got {value!r}")
    return pair  # type: ignore[return-value]


def resize_pos_embed(
    pos_embed: torch.Tensor,
    src_shape: Sequence[int],
    dst_shape: Sequence[int],
    mode: str = "bicubic",
    num_extra_tokens: int = 1,
) -> torch.Tensor:
    """Resize a ``(1, num_extra_tokens + h*w, C)`` embedding from grid ``src_shape`` to
    ``dst_shape`` (both ``(h, w)`` in patches).

    The extra tokens (class token, distillation token) are kept as they are; the patch part
    is interpolated as an image (in float32: bicubic has no half kernel on every device).
    The same tensor comes back when the grids already match.
    """
    src_h, src_w = to_2tuple(src_shape)
    dst_h, dst_w = to_2tuple(dst_shape)
    if (src_h, src_w) == (dst_h, dst_w):
        return pos_embed
    if pos_embed.ndim != 3:
        raise ValueError(f"pos_embed must have shape (1, L, C), got {tuple(pos_embed.shape)}")
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f"unknown interpolate mode {mode!r}; choose from {INTERPOLATE_MODES}")
    _, length, channels = pos_embed.shape
    if length != src_h * src_w + num_extra_tokens:
        raise ValueError(
            f"pos_embed holds {length} tokens but the source grid {src_h}x{src_w} plus "
            f"{num_extra_tokens} extra token(s) needs {src_h * src_w + num_extra_tokens}; "
            "check the img_size / patch_size arguments"
        )
    extra = pos_embed[:, :num_extra_tokens]
    grid = pos_embed[:, num_extra_tokens:].reshape(1, src_h, src_w, channels).permute(0, 3, 1, 2)
    align = False if mode in ("bilinear", "bicubic") else None
    resized = F.interpolate(grid.float(), size=(dst_h, dst_w), mode=mode, align_corners=align)
    resized = resized.flatten(2).transpose(1, 2).to(pos_embed.dtype)
    return torch.cat((extra, resized), dim=1)


def build_2d_sincos_position_embedding(
    patches_resolution: int | Sequence[int],
    embed_dims: int,
    temperature: float = 10000.0,
    cls_token: bool = False,
) -> torch.Tensor:
    """The fixed 2D sine-cosine embedding, shape ``(1, [1 +] h*w, embed_dims)``.

    A quarter of the channels each holds sin/cos of the w and h coordinates at geometric
    frequencies. Tokens are enumerated with ``w`` as the outer index, as in MMPretrain (an
    ``ij`` meshgrid over ``(w, h)``); with ``cls_token`` a zero row is prepended for it.
    """
    h, w = to_2tuple(patches_resolution)
    if embed_dims % 4 != 0:
        raise ValueError(
            f"embed_dims={embed_dims} must be divisible by 4 for a 2D sin-cos position embedding"
        )
    grid_w, grid_h = torch.meshgrid(
        torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij"
    )
    pos_dim = embed_dims // 4
    omega = 1.0 / temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim)
    out_w = grid_w.flatten()[:, None] * omega[None, :]
    out_h = grid_h.flatten()[:, None] * omega[None, :]
    pos = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]
    if cls_token:
        pos = torch.cat([torch.zeros(1, 1, embed_dims, dtype=torch.float32), pos], dim=1)
    return pos
