"""Dataset wrappers (MMEngine): ``ConcatDataset``, several datasets read as one, and
``RepeatDataset``, one dataset read ``times`` times over.

MMSegmentation's PASCAL VOC "aug" training set is the classic use: the VOC ``train``
split with its own masks followed by the SBD ``aug`` split with converted masks::

    dataset=dict(type='ConcatDataset', datasets=[dataset_train, dataset_aug])

The meta information is the first dataset's; the others must agree with it on every
key except ``ignore_keys``, so that class ids mean the same thing in every part.

``RepeatDataset`` serves small training sets (DRIVE, STARE, ...) in epoch-free configs:
``dict(type='RepeatDataset', times=40000, dataset=...)`` has ``times * len(dataset)``
samples, sample ``i`` being ``dataset[i % len(dataset)]``, and the inner metainfo.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from vistra.data.datasets.base import BaseDataset
from vistra.data.seeding import split_index
from vistra.registry import DATASETS


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # arrays: element-wise == has no single truth value
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


@DATASETS.register_module()
class ConcatDataset:
    """The samples of ``datasets`` (built datasets or config dicts), one after another."""

    def __init__(
        self,
        datasets: Sequence[BaseDataset | dict],
        lazy_init: bool = False,
        ignore_keys: str | Sequence[str] | None = None,
    ) -> None:
        if not isinstance(datasets, Sequence) or isinstance(datasets, str) or not datasets:
            raise ValueError(
                f"ConcatDataset needs a non-empty list of datasets (objects or config dicts), "
                f"got {datasets!r}"
            )
        self.datasets: list[Any] = []
        for i, dataset in enumerate(datasets):
            if isinstance(dataset, dict):
                dataset = DATASETS.build(dataset, key_path=f"ConcatDataset.datasets[{i}]")
            self.datasets.append(dataset)
        if isinstance(ignore_keys, str):
            ignore_keys = [ignore_keys]
        if ignore_keys is not None and not all(isinstance(k, str) for k in ignore_keys):
            raise TypeError(f"ignore_keys must be a str or a list of str, got {ignore_keys!r}")
        self.ignore_keys = list(ignore_keys or [])
        self._metainfo = self.datasets[0].metainfo
        self._check_metainfo()
        self._fully_initialized = False
        self.cumulative_sizes: list[int] = []
        if not lazy_init:
            self.full_init()

    def _check_metainfo(self) -> None:
        first = self._metainfo
        for i, dataset in enumerate(self.datasets[1:], start=1):
            meta = dataset.metainfo
            for key in sorted(set(first) | set(meta)):
                if key in self.ignore_keys:
                    continue
                if key not in first or key not in meta or not _same(first[key], meta[key]):
                    raise ValueError(
                        f"ConcatDataset: datasets[{i}] ({type(dataset).__name__}) has metainfo "
                        f"{key!r}={meta.get(key)!r} but datasets[0] has {first.get(key)!r}; "
                        f"the parts must agree, or list {key!r} in ignore_keys"
                    )

    @property
    def metainfo(self) -> dict:
        """The first dataset's meta information (a copy)."""
        return dict(self._metainfo)

    def full_init(self) -> None:
        """Load every part and index them."""
        if self._fully_initialized:
            return
        for dataset in self.datasets:
            dataset.full_init()
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]))
        self._fully_initialized = True

    def __len__(self) -> int:
        self.full_init()
        return int(self.cumulative_sizes[-1]) if self.cumulative_sizes else 0

    def _get_ori_dataset_idx(self, idx: int) -> tuple[int, int]:
        """``(which dataset, index inside it)`` for global index ``idx`` (may be negative)."""
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} out of range for ConcatDataset with {n} samples")
        idx %= n
        part = bisect.bisect_right(self.cumulative_sizes, idx)
        start = 0 if part == 0 else int(self.cumulative_sizes[part - 1])
        return part, idx - start

    def get_data_info(self, idx: int) -> dict:
        part, sample = self._get_ori_dataset_idx(idx)
        return self.datasets[part].get_data_info(sample)

    def __getitem__(self, item: int | tuple[int, int]) -> Any:
        idx, seed = split_index(item)
        part, sample = self._get_ori_dataset_idx(idx)
        return self.datasets[part][sample if seed is None else (sample, seed)]

    def __repr__(self) -> str:
        parts = ", ".join(type(d).__name__ for d in self.datasets)
        n = len(self) if self._fully_initialized else "not loaded"
        return f"ConcatDataset([{parts}], samples={n})"


@DATASETS.register_module()
class RepeatDataset:
    """``dataset`` (a built dataset or a config dict) repeated ``times`` times."""

    def __init__(self, dataset: BaseDataset | dict, times: int, lazy_init: bool = False) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset, key_path="RepeatDataset.dataset")
        elif not hasattr(dataset, "__getitem__") or not hasattr(dataset, "metainfo"):
            raise TypeError(
                f"RepeatDataset.dataset must be a dataset or a config dict, got "
                f"{type(dataset).__name__}"
            )
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"RepeatDataset.times must be an integer >= 1, got {times!r}")
        self.dataset: Any = dataset
        self.times = times
        self._metainfo = dataset.metainfo
        self._fully_initialized = False
        self._ori_len = 0
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        """The inner dataset's meta information (a copy)."""
        return copy.deepcopy(self._metainfo)

    def full_init(self) -> None:
        """Load the inner dataset."""
        if self._fully_initialized:
            return
        if hasattr(self.dataset, "full_init"):
            self.dataset.full_init()
        self._ori_len = len(self.dataset)
        self._fully_initialized = True

    def __len__(self) -> int:
        self.full_init()
        return self.times * self._ori_len

    def _get_ori_dataset_idx(self, idx: int) -> int:
        """The inner index of global index ``idx`` (may be negative, as a list index)."""
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} out of range for RepeatDataset with {n} samples")
        return idx % self._ori_len

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(self._get_ori_dataset_idx(idx))

    def __getitem__(self, item: int | tuple[int, int]) -> Any:
        idx, seed = split_index(item)
        sample = self._get_ori_dataset_idx(idx)
        return self.dataset[sample if seed is None else (sample, seed)]

    def get_subset(self, indices: Any) -> Any:
        raise NotImplementedError(
            "RepeatDataset has no get_subset (a subset of repeats is ambiguous); take the "
            "subset of the inner dataset (its `indices` argument) and repeat that"
        )

    get_subset_ = get_subset

    def __repr__(self) -> str:
        n = len(self) if self._fully_initialized else "not loaded"
        return f"RepeatDataset({type(self.dataset).__name__}, times={self.times}, samples={n})"


__all__ = ["ConcatDataset", "RepeatDataset"]
