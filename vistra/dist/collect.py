"""Gather per-rank Python objects with collective ops (no shared filesystem needed)."""

from __future__ import annotations

from itertools import zip_longest
from typing import Any

import torch.distributed as torch_dist

_PAD = object()


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def get_rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def collect_results(results: list, size: int) -> list | None:
    """All ranks' ``results`` in dataset order, cut to ``size``; None on ranks other than 0.

    Samplers shard as ``indices[rank::world_size]``, so interleaving the per-rank lists
    restores the dataset order; cutting to ``size`` drops the samples a sampler repeated to
    give every rank the same count, so no sample is counted twice.
    """
    if not is_distributed():
        return list(results[:size])
    parts: list[list | None] = [None] * get_world_size()
    torch_dist.all_gather_object(parts, list(results))
    if get_rank() != 0:
        return None
    ordered = [r for group in zip_longest(*parts, fillvalue=_PAD) for r in group if r is not _PAD]
    return ordered[:size]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(value: float) -> float:
    """The mean of a float over ranks (for logging)."""
    if not is_distributed():
        return value
    import torch

    t = torch.tensor([value], dtype=torch.float64)
    torch_dist.all_reduce(t)
    return float(t.item()) / get_world_size()
