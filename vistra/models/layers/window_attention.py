"""Window attention with a learned relative position bias (Swin,
`paper <https://arxiv.org/abs/2103.14030>`__), shared by the Swin-like families.

- ``WindowMSA``: multi-head self-attention inside one ``Wh x Ww`` window, plus a bias
  ``relative_position_bias_table[relative_position_index]`` (one row per offset, one
  column per head). Keys ``relative_position_bias_table``, ``relative_position_index``
  (a stored buffer), ``qkv``, ``proj``: MMPretrain's and MMSegmentation's alike.
- ``ShiftWindowMSA``: the map is padded bottom/right to whole windows, cyclically shifted
  by ``shift_size`` (positions that wrap around are masked from each other at ``-100``,
  not ``-inf``, as upstream), split into windows, attended by ``w_msa`` (a ``WindowMSA``
  or another window attention class, e.g. Swin-V2's or DaViT's) and put back. With
  ``pad_small_map=False`` (MMPretrain's classification default) a map exactly one window
  high or wide is not shifted, and a smaller one is an error; MMSegmentation's Swin is
  ``pad_small_map=True`` (always pad, always shift).

Attention runs through ``F.scaled_dot_product_attention``; the bias and the shift mask are
its additive ``attn_mask``. ``windowed_attention`` is that call for any
window attention (Swin-V2's cosine attention, DaViT's bias-free one). The helpers
(``window_partition``, ``window_reverse``, ``shifted_window_mask``,
``relative_position_index``, ``resize_relative_position_bias_table``) are plain functions so
that tests can check them against the paper's definitions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.drop import build_dropout
from vistra.models.layers.pos_embed import to_2tuple

__all__ = [
    "ShiftWindowMSA",
    "WindowMSA",
    "relative_position_index",
    "resize_relative_position_bias_table",
    "shifted_window_mask",
    "window_partition",
    "window_reverse",
    "windowed_attention",
]


# ----------------------------------------------------------------------------- helpers
def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """``(B, H, W, C)`` to ``(B * nW, ws, ws, C)``; windows row-major within each image,
    images outermost (the order ``shifted_window_mask`` and ``WindowMSA`` assume)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of ``window_partition``: ``(B * nW, ws, ws, C)`` to ``(B, H, W, C)``."""
    ws = windows.shape[1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def shifted_window_mask(
    h: int, w: int, window_size: int, shift_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """``(nW, ws*ws, ws*ws)`` additive mask for an ``h x w`` map shifted by ``shift_size``:
    ``-100`` between positions of different regions (the wrapped-around strips), ``0``
    within one region."""
    img = torch.zeros((1, h, w, 1), device=device)
    bounds = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    region = 0
    for rows in bounds:
        for cols in bounds:
            img[:, rows, cols, :] = region
            region += 1
    ids = window_partition(img, window_size).reshape(-1, window_size * window_size)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def relative_position_index(window_size: Sequence[int]) -> torch.Tensor:
    """``(Wh*Ww, Wh*Ww)`` index into the ``(2Wh-1)(2Ww-1)`` bias table: entry ``(p, q)`` is
    ``(dy + Wh - 1) * (2Ww - 1) + (dx + Ww - 1)`` with ``(dy, dx) = p - q``.

    Built on the CPU whatever the default device, so that a model built on the meta device
    (key listing) still holds the index."""
    wh, ww = window_size
    ys, xs = torch.meshgrid(
        torch.arange(wh, device="cpu"), torch.arange(ww, device="cpu"), indexing="ij"
    )
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, Wh*Ww)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)


def resize_relative_position_bias_table(
    src_size: int, dst_size: int, table: torch.Tensor, num_head: int
) -> torch.Tensor:
    """A ``(src_size**2, num_head)`` table (``src_size = 2 * window - 1``) resized to
    ``(dst_size**2, num_head)``, as MMPretrain does when a checkpoint of another window is
    loaded: source offsets are spread at geometrically growing distances (the centre keeps
    its resolution) and a bicubic interpolating spline through them is sampled at the
    target's integer offsets. The spline maths is BEiT's resizing (same method)."""
    from vistra.models.backbones.beit_mmseg import resize_relative_position_bias_table as beit

    if table.shape != (src_size * src_size, num_head):
        raise ValueError(
            f"relative_position_bias_table of shape {tuple(table.shape)} is not "
            f"({src_size}**2, {num_head})"
        )
    if src_size == dst_size:
        return table
    if dst_size % 2 == 0:
        raise ValueError(f"dst_size={dst_size} must be odd (2 * window_size - 1)")
    # BEiT's helper takes a table with trailing extra rows (class-token offsets): give it
    # one dummy row and drop it again; the grid part is resized exactly as upstream's
    padded = torch.cat([table, table.new_zeros(1, num_head)])
    window = ((dst_size + 1) // 2,) * 2
    return beit(padded, dst_size * dst_size + 1, window)[:-1]


# ----------------------------------------------------------------------------- attention
class WindowMSA(BaseModule):
    """Multi-head self-attention inside windows, with a relative position bias.

    Input ``(B * nW, Wh*Ww, C)``; ``mask`` ``(nW, N, N)`` (additive, ``<= 0``) is added to
    the logits of each image's ``nW`` windows. Arguments are MMPretrain's.
    """

    def __init__(
        self,
        embed_dims: int,
        window_size: Sequence[int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.window_size = to_2tuple(window_size)
        self.scale = qk_scale or (embed_dims // num_heads) ** -0.5
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(self.window_size))
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias for a window of ``N = Wh*Ww`` tokens."""
        n = self.window_size[0] * self.window_size[1]
        table = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return table.view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B*nW, heads, N, d)
        bias = self.relative_position_bias().to(q.dtype)
        out = windowed_attention(
            q, k, v, bias, mask, self.scale, self.attn_drop if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


def windowed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor | None,
    scale: float,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """``softmax(scale * q k^T + bias + mask) v`` over ``(B * nW, heads, N, d)`` windows.

    ``bias`` ``(heads, N, N)`` is shared by every window; ``mask`` ``(nW, N, N)`` by the
    same window of every image. Windows are grouped per image, ``(B, nW * heads, N, d)``,
    so both broadcast into one 4-D ``attn_mask`` without copying it per image.
    """
    bw, heads, n, d = q.shape
    if mask is None:
        attn_mask = None if bias is None else bias.unsqueeze(0)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale
        )
    nw = mask.shape[0]
    if bw % nw:
        raise ValueError(f"{bw} windows are not a whole number of images of {nw} windows")
    attn_mask = mask.to(q.dtype).unsqueeze(1)  # (nW, 1, N, N)
    if bias is not None:
        attn_mask = attn_mask + bias.unsqueeze(0)
    attn_mask = attn_mask.expand(nw, heads, n, n).reshape(1, nw * heads, n, n)
    group = (bw // nw, nw * heads, n, d)
    out = F.scaled_dot_product_attention(
        q.reshape(group),
        k.reshape(group),
        v.reshape(group),
        attn_mask=attn_mask,
        dropout_p=dropout_p,
        scale=scale,
    )
    return out.reshape(bw, heads, n, d)


class ShiftWindowMSA(BaseModule):
    """Window attention over ``(B, H*W, C)`` tokens with optional cyclic shift (module
    docstring), then ``dropout_layer`` (DropPath). ``window_msa`` is the window attention
    class (built with ``embed_dims``, ``num_heads``, ``window_size`` and ``**kwargs``);
    its keys sit under ``w_msa``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        dropout_layer: dict | None = dict(type="DropPath", drop_prob=0.0),  # noqa: B006
        pad_small_map: bool = False,
        window_msa: type[nn.Module] = WindowMSA,
        init_cfg: dict | list[dict] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(window_size, int) or window_size < 1:
            raise ValueError(f"window_size must be a positive int, got {window_size!r}")
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size={shift_size} must be in [0, window_size={window_size})")
        self.window_size, self.shift_size = window_size, shift_size
        self.pad_small_map = pad_small_map
        # kwargs are the window attention's own arguments (qkv_bias, attn_drop, ...); an
        # unknown one is the TypeError of its constructor
        self.w_msa = window_msa(
            embed_dims=embed_dims, num_heads=num_heads, window_size=to_2tuple(window_size), **kwargs
        )
        self.drop = build_dropout(dropout_layer) if dropout_layer else nn.Identity()

    def _shift_for(self, h: int, w: int) -> int:
        """The shift this map gets (upstream's small-map rules)."""
        ws = self.window_size
        if min(h, w) == ws and not self.pad_small_map:
            return 0  # one window across: the original Swin does not shift it
        if min(h, w) < ws and not self.pad_small_map:
            raise ValueError(
                f"the {h}x{w} map is smaller than window_size={ws}: set pad_small_map=True "
                "or a smaller window_size (or a larger input)"
            )
        return self.shift_size

    def forward(self, query: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        b, length, c = query.shape
        h, w = hw_shape
        if length != h * w:
            raise ValueError(f"ShiftWindowMSA: {length} tokens do not make an {h}x{w} map")
        ws, shift = self.window_size, self._shift_for(h, w)
        x = query.view(b, h, w, c)
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = x.shape[1], x.shape[2]
        mask = None
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = shifted_window_mask(hp, wp, ws, shift, device=x.device)
        windows = window_partition(x, ws).reshape(-1, ws * ws, c)
        windows = self.w_msa(windows, mask=mask).view(-1, ws, ws, c)
        x = window_reverse(windows, hp, wp)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = x[:, :h, :w, :].reshape(b, h * w, c)
        return self.drop(x)
