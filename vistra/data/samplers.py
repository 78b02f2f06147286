"""Samplers that shard across ranks and can restart mid-epoch without replaying a batch.

Both samplers are pure functions of ``(seed, epoch)``: the order of an epoch is
``randperm(len, generator=seed + epoch)``, sharded as ``indices[rank::world_size]``. A
resumed run calls ``set_epoch(e)`` and ``set_start(n)`` and the sampler yields from the n-th
sample of its shard on, so the resumed run sees exactly the batches the stopped run had
not seen yet.

When ``seed_samples`` is on (the runner turns it on for vistra datasets), each index is
yielded as ``(index, sample_seed)`` so that the dataset runs its random augmentation under
a per-sample seed: augmentation then no longer depends on worker count, worker RNG
progress or where a run was resumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import torch

from vistra.registry import DATA_SAMPLERS


def _rank_and_world() -> tuple[int, int]:
    from vistra.dist.collect import get_rank, get_world_size

    return get_rank(), get_world_size()


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample of one epoch (a fixed integer hash, not Python's hash)."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & (
        (1 << 64) - 1
    )
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) & ((1 << 64) - 1)
    x ^= x >> 32
    return x & ((1 << 63) - 1)


class _ResumableSampler:
    """Shared state: seed, epoch, start position, rank sharding, optional sample seeds."""

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: int | None = None) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = 0 if seed is None else int(seed)
        self.rank, self.world_size = _rank_and_world()
        self.epoch = 0
        self.start = 0
        self.seed_samples = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank's shard in the next iteration only."""
        self.start = max(0, int(start))

    def _epoch_order(self, epoch: int) -> list[int]:
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        return torch.randperm(n, generator=g).tolist()

    def _emit(self, index: int, epoch: int) -> int | tuple[int, int]:
        if self.seed_samples:
            return index, sample_seed(self.seed, epoch, index)
        return index

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "shuffle": self.shuffle}


@DATA_SAMPLERS.register_module()
class DefaultSampler(_ResumableSampler):
    """One pass over the dataset per epoch, sharded across ranks (MMEngine's DefaultSampler).

    ``round_up=True`` repeats the first samples so every rank gets the same count; the
    evaluator drops those repeats again.
    """

    def __init__(
        self, dataset: Sized, shuffle: bool = True, seed: int | None = None, round_up: bool = True
    ) -> None:
        super().__init__(dataset, shuffle, seed)
        self.round_up = round_up
        n = len(dataset)
        if round_up:
            self.num_samples = math.ceil(n / self.world_size)
            self.total_size = self.num_samples * self.world_size
        else:
            self.num_samples = math.ceil((n - self.rank) / self.world_size)
            self.total_size = n

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        indices = self._epoch_order(self.epoch)
        if self.round_up and self.total_size > len(indices):
            reps = math.ceil(self.total_size / max(1, len(indices)))
            indices = (indices * reps)[: self.total_size]
        shard = indices[self.rank : self.total_size : self.world_size]
        start, self.start = self.start, 0
        epoch = self.epoch
        for index in shard[start:]:
            yield self._emit(index, epoch)

    def __len__(self) -> int:
        return self.num_samples


@DATA_SAMPLERS.register_module()
class InfiniteSampler(_ResumableSampler):
    """An endless stream for iteration-based training (MMEngine's InfiniteSampler).

    The stream is pass 0, pass 1, ... each a fresh permutation seeded by ``seed + pass``
    and sharded across ranks, so position ``n`` is found without generating the ones before.
    """

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        n = len(self.dataset)
        if n == 0:
            raise ValueError("InfiniteSampler got an empty dataset")
        per_rank = math.ceil(n / self.world_size)
        position, self.start = self.start, 0
        pass_idx, offset = divmod(position, per_rank)
        while True:
            order = self._epoch_order(pass_idx)
            reps = math.ceil(per_rank * self.world_size / n)
            order = (order * reps)[: per_rank * self.world_size]
            for index in order[self.rank :: self.world_size][offset:]:
                yield self._emit(index, pass_idx)
            pass_idx, offset = pass_idx + 1, 0

    def __len__(self) -> int:
        # Like MMEngine: the length of one pass over this rank's shard.
        return math.ceil(len(self.dataset) / self.world_size)


from vistra.data import samplers_deepcluster  # noqa: E402,F401  (registers DeepClusterSampler)
