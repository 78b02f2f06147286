"""Batch collation functions, registered in ``FUNCTIONS`` under MMEngine's names.

``pseudo_collate`` (the default) transposes a list of samples into a dict of lists
without stacking, because images of one batch may differ in size until the data
preprocessor pads them. ``default_collate`` stacks tensors (and converts numbers and
arrays) like ``torch.utils.data.default_collate`` but keeps :class:`DataSample` records
as a list. Both recurse through mappings and sequences the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch.utils.data import default_collate as torch_default_collate

from vistra.data.structures import DataSample, PixelData
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
