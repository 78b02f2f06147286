"""Batch collation functions, registered in ``FUNCTIONS`` under MMEngine's names.

``pseudo_collate`` (the default) transposes a list of samples into a dict of lists
without stacking, because images of one batch may differ in size until the data
preprocessor pads them. ``default_collate`` stacks tensors (and converts numbers and
arrays) like ``torch.utils.data.default_collate`` but keeps :class:`DataSample` records
as a list. Both recurse through mappings and sequences the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate as torch_default_collate
from torch.utils.data import get_worker_info

from vistra.data.structures import INLINE_NUMEL, DataSample, PixelData
from vistra.registry import FUNCTIONS


def _collate(batch: Sequence, leaf: Callable[[list], Any]) -> Any:
    """Transpose mappings and sequences recursively; hand anything else to ``leaf``."""
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    item = batch[0]
    if isinstance(item, (str, bytes)):
        return list(batch)
    if isinstance(item, tuple) and hasattr(item, "_fields"):  # named tuple
        return type(item)(*(_collate(list(s), leaf) for s in zip(*batch)))
    if isinstance(item, Sequence):
        if any(len(x) != len(item) for x in batch):
            sizes = sorted({len(x) for x in batch})
            raise RuntimeError(
                f"cannot collate sequences of different lengths {sizes} in one batch"
            )
        transposed = [_collate(list(s), leaf) for s in zip(*batch)]
        if isinstance(item, tuple):
            return transposed  # a list, as torch and MMEngine return
        try:
            return type(item)(transposed)
        except TypeError:  # sequence types without a list constructor (range, ...)
            return transposed
    if isinstance(item, Mapping):
        return type(item)({key: _collate([d[key] for d in batch], leaf) for key in item})
    return leaf(list(batch))


def _stack(batch: list) -> Any:
    if isinstance(batch[0], (DataSample, PixelData)):
        return batch
    return torch_default_collate(batch)


@FUNCTIONS.register_module()
def pseudo_collate(data_batch: Sequence) -> Any:
    """``[{'inputs': t, 'data_samples': s}, ...]`` -> ``{'inputs': [t, ...], 'data_samples': [s, ...]}``."""
    return _collate(data_batch, list)


@FUNCTIONS.register_module()
def default_collate(data_batch: Sequence) -> Any:
    """Like :func:`pseudo_collate` but stacks tensors, arrays and numbers into tensors."""
    return _collate(data_batch, _stack)


def _map_tensors(obj: Any, visit: Callable[[Any], Any], leaf: type = torch.Tensor) -> Any:
    """``obj`` with every ``leaf`` (a tensor) ``t`` in it replaced by ``visit(t)``; lists,
    dicts and records are updated in place (a collated batch is fresh, nobody else holds
    it)."""
    if isinstance(obj, leaf):
        return visit(obj)
    if isinstance(obj, list):
        obj[:] = [_map_tensors(x, visit, leaf) for x in obj]
    elif isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _map_tensors(value, visit, leaf)
    elif isinstance(obj, tuple):
        items = [_map_tensors(x, visit, leaf) for x in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    elif isinstance(obj, DataSample):
        fields = obj.__dict__["_fields"]
        for key, value in fields.items():
            fields[key] = _map_tensors(value, visit, leaf)
    elif isinstance(obj, PixelData):
        obj._data = _map_tensors(obj.data, visit, leaf)  # same shape: no setter checks
    return obj


def share_one_storage(batch: Any) -> Any:
    """Move the batch's CPU tensors into one storage per dtype, each tensor a view of it.

    The values, shapes and the batch's structure are unchanged. Views of one storage still
    cross to another process one by one (see :class:`PackedBatch`).
    """
    flats, skeleton = _pack(batch)
    return _unpack(flats, skeleton) if flats else batch


class _Slot:
    """Where a tensor of a packed batch lies: its dtype group, offset and shape."""

    __slots__ = ("group", "offset", "shape")

    def __init__(self, group: int, offset: int, shape: torch.Size) -> None:
        self.group, self.offset, self.shape = group, offset, shape

    def __reduce__(self) -> tuple:
        return (_Slot, (self.group, self.offset, tuple(self.shape)))


def _pack(batch: Any) -> tuple[list[torch.Tensor], Any]:
    """One flat tensor per dtype holding the batch's sizeable CPU tensors, and the batch
    with each of those replaced by its :class:`_Slot` (tiny ones stay: a DataSample
    pickles them inline, INLINE_NUMEL). A tensor met twice gets one slot."""
    groups: dict[torch.dtype, dict[int, torch.Tensor]] = {}

    def collect(t: torch.Tensor) -> torch.Tensor:
        if t.device.type == "cpu" and not t.requires_grad and t.numel() > INLINE_NUMEL:
            groups.setdefault(t.dtype, {})[id(t)] = t
        return t

    _map_tensors(batch, collect)
    flats: list[torch.Tensor] = []
    slots: dict[int, _Slot] = {}
    for tensors in groups.values():
        unique = list(tensors.values())
        if len(unique) < 2:  # one tensor: nothing to merge
            continue
        offset = 0
        for t in unique:
            slots[id(t)] = _Slot(len(flats), offset, t.shape)
            offset += t.numel()
        flats.append(
            torch.cat([t.reshape(-1) for t in unique], out=_flat_buffer(unique[0], offset))
        )
    if not flats:
        return [], batch
    return flats, _map_tensors(batch, lambda t: slots.get(id(t), t))


def _flat_buffer(like: torch.Tensor, numel: int) -> torch.Tensor | None:
    """Where a data-loader worker packs: straight into shared memory, as torch's own
    ``default_collate`` stacks there, so sending the batch copies nothing more (an ImageNet
    batch of 32 is 4.8 MB). None elsewhere: ``torch.cat`` allocates."""
    if get_worker_info() is None:
        return None
    storage = like._typed_storage()._new_shared(numel, device=like.device)
    return like.new(storage)


def _unpack(flats: list[torch.Tensor], skeleton: Any) -> Any:
    def view(slot: _Slot) -> torch.Tensor:
        flat = flats[slot.group]
        return flat[slot.offset : slot.offset + math.prod(slot.shape)].view(slot.shape)

    return _map_tensors(skeleton, view, _Slot)


class PackedBatch:
    """A batch on its way from a data-loader worker: :func:`_pack`'s flat tensors and
    skeleton, which unpickle in the main process as the plain batch again.

    Torch pickles every tensor on its own: a view of a shared storage still sends that
    storage's file descriptor, and the receiver fetches each descriptor over a socket
    from the worker (``multiprocessing.resource_sharer``), ~0.1 ms a round trip on each
    side. A pseudo-collated batch holds a tensor per image, so 32 views cost ~3 ms of
    worker CPU per batch; one flat tensor per dtype costs one round trip each.
    """

    def __init__(self, batch: Any) -> None:
        self.flats, self.skeleton = _pack(batch)

    def __reduce__(self) -> tuple:
        return (_unpack, (self.flats, self.skeleton))


class WorkerCollate:
    """A data-loader worker's collate function: ``collate``, then the batch packed for the
    trip to the main process (:class:`PackedBatch`), where it unpickles as the batch
    ``collate`` made (a class, not a closure, so it pickles for the ``spawn`` start
    method)."""

    def __init__(self, collate: Callable[[Sequence], Any]) -> None:
        self.collate = collate

    def __call__(self, data_batch: Sequence) -> Any:
        batch = self.collate(data_batch)
        packed = PackedBatch(batch)
        return packed if packed.flats else batch
