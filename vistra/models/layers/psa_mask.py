"""``PSAMask``: the point-wise spatial attention re-indexing of `PSANet
<https://hszhao.github.io/papers/eccv18_psanet.pdf>`_ (MMCV's ``mmcv.ops.PSAMask``), in plain
PyTorch (a gather; MMCV runs a compiled kernel, which mmcv-lite does not ship).

No parameters.

Every position ``p = (h, w)`` of an ``H x W`` map predicts an ``Hm x Wm`` mask centred on
itself (centre ``((Hm - 1) // 2, (Wm - 1) // 2)``). Placing it over the map gives ``p``'s
weight for every position ``q = (h', w')``: mask entry ``(h' - h + (Hm-1)//2,
w' - w + (Wm-1)//2)``, or 0 where the mask does not reach. The output, ``(N, H*W, H, W)``,
read as a matrix ``A`` of ``(H*W) x (H*W)`` (row = channel, column = flattened pixel):

- ``'collect'``: ``A[q, p] = mask[p](q)`` (channel ``q``, pixel ``p``: what ``p`` gathers
  from ``q``);
- ``'distribute'``: the transpose, ``A[p, q] = mask[p](q)`` (what ``p`` sends to ``q``).

With ``Hm = 2H - 1`` and ``Wm = 2W - 1`` (PSANet's choice, and the default when
``mask_size`` is None) every mask covers the whole map.
"""

from __future__ import annotations

import torch
from torch import nn

PSA_TYPES = ("collect", "distribute")


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


def psa_mask_index(
    h: int, w: int, h_mask: int, w_mask: int, device: torch.device | None = None
) -> torch.Tensor:
    """``(H*W, H*W)`` long tensor ``I[q, p]``: the mask channel position ``p`` uses for
    position ``q``, or ``h_mask * w_mask`` (a zero channel) where the mask does not reach."""
    half_h, half_w = (h_mask - 1) // 2, (w_mask - 1) // 2
    hs = torch.arange(h, device=device)
    ws = torch.arange(w, device=device)
    # offsets in the mask: row (q_h - p_h + half_h), col (q_w - p_w + half_w)
    dh = hs.view(h, 1) - hs.view(1, h) + half_h  # [q_h, p_h]
    dw = ws.view(w, 1) - ws.view(1, w) + half_w  # [q_w, p_w]
    valid = ((dh >= 0) & (dh < h_mask)).view(h, 1, h, 1) & ((dw >= 0) & (dw < w_mask)).view(
        1, w, 1, w
    )
    index = dh.view(h, 1, h, 1) * w_mask + dw.view(1, w, 1, w)  # [q_h, q_w, p_h, p_w]
    index = torch.where(valid, index, torch.full_like(index, h_mask * w_mask))
    return index.reshape(h * w, h * w)


def psa_mask(
    x: torch.Tensor, psa_type: str, mask_size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """``(N, Hm*Wm, H, W)`` masks -> ``(N, H*W, H, W)`` attention maps (module docstring)."""
    if psa_type not in PSA_TYPES:
        raise ValueError(f"psa_type={psa_type!r}: valid: {list(PSA_TYPES)}")
    n, c, h, w = x.shape
    h_mask, w_mask = _pair(mask_size) if mask_size is not None else (2 * h - 1, 2 * w - 1)
    if c != h_mask * w_mask:
        raise ValueError(
            f"PSAMask with mask_size ({h_mask}, {w_mask}) needs {h_mask * w_mask} input "
            f"channels, got {c}"
        )
    flat = x.reshape(n, c, h * w)
    flat = torch.cat([flat, flat.new_zeros(n, 1, h * w)], dim=1)  # the zero channel
    index = psa_mask_index(h, w, h_mask, w_mask, device=x.device)
    # collected[n, q, p] = flat[n, index[q, p], p]
    collected = torch.gather(flat, 1, index.unsqueeze(0).expand(n, -1, -1))
    if psa_type == "distribute":
        collected = collected.transpose(1, 2)
    return collected.reshape(n, h * w, h, w)


class PSAMask(nn.Module):
    """Module form of :func:`psa_mask` (MMCV's ``PSAMask(psa_type, mask_size)``)."""

    def __init__(self, psa_type: str, mask_size: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        if psa_type not in PSA_TYPES:
            raise ValueError(f"psa_type={psa_type!r}: valid: {list(PSA_TYPES)}")
        self.psa_type, self.mask_size = psa_type, mask_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return psa_mask(x, self.psa_type, self.mask_size)

    def extra_repr(self) -> str:
        return f"psa_type={self.psa_type}, mask_size={self.mask_size}"
