"""``DeepClusterSampler`` (MMSelfSup 1.x): DeepCluster's and ODC's training sampler.

Like ``DefaultSampler`` (one pass per epoch, sharded across ranks, rounded up), plus:
``replace=True`` draws the epoch's indices with replacement (ODC), and
:meth:`set_uniform_indices`, which ``DeepClusterHook`` calls after each clustering, makes
the next epoch sample every non-empty cluster equally often (DeepCluster's uniform
sampling over pseudo-labels). The orders are MMSelfSup's: ``randint``/``randperm`` on a
generator seeded by ``seed + epoch``, and for uniform sampling numpy draws seeded by the
epoch (from a private ``RandomState``, not numpy's global one).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized

import numpy as np
import torch

from vistra.data.samplers import DefaultSampler
from vistra.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class DeepClusterSampler(DefaultSampler):
    """``DefaultSampler`` with sampling with replacement and cluster-uniform epochs."""

    def __init__(
        self,
        dataset: Sized,
        shuffle: bool = True,
        seed: int | None = None,
        replace: bool = False,
        round_up: bool = True,
    ) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
        self.replace = replace
        self.unif_sampling_flag = False
        self.indices: list[int] = []

    def _default_indices(self) -> list[int]:
        n = len(self.dataset)
        if not self.shuffle:
            indices = list(range(n))
        else:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            if self.replace:
                indices = torch.randint(0, n, (n,), generator=g).tolist()
            else:
                indices = torch.randperm(n, generator=g).tolist()
        return (indices * (self.total_size // len(indices) + 1))[: self.total_size]

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        if self.unif_sampling_flag:
            # the uniform order set by the hook serves exactly one epoch
            self.unif_sampling_flag = False
            indices = self.indices
        else:
            indices = self._default_indices()
        self.indices = indices
        shard = indices[self.rank : self.total_size : self.world_size]
        start, self.start = self.start, 0
        epoch = self.epoch
        for index in shard[start:]:
            yield self._emit(index, epoch)

    def set_uniform_indices(self, labels: Sequence[int], num_classes: int) -> None:
        """Next epoch: about ``N / num_classes + 1`` samples of every non-empty cluster."""
        if not self.shuffle:
            raise ValueError("DeepClusterSampler uniform sampling needs shuffle=True")
        n = len(labels)
        if n != len(self.dataset):
            raise ValueError(f"got {n} labels for a dataset of {len(self.dataset)} samples")
        rng = np.random.RandomState(self.epoch)
        per_label = n // num_classes + 1
        members: list[list[int]] = [[] for _ in range(num_classes)]
        for i, label in enumerate(labels):
            members[int(label)].append(i)
        chosen: list[int] = []
        for group in members:
            if group:
                chosen.extend(rng.choice(group, per_label, replace=len(group) <= per_label))
        order = np.array(chosen)
        rng.shuffle(order)
        indices = order[:n].astype(int).tolist()
        self.indices = (indices * (self.total_size // len(indices) + 1))[: self.total_size]
        self.unif_sampling_flag = True
