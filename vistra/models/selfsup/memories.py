"""Memory banks of MMSelfSup 1.x: ``SimpleMemory`` (NPID) and ``ODCMemory`` (ODC).

- ``SimpleMemory`` (Wu et al., "Unsupervised Feature Learning via Non-parametric Instance
  Discrimination", 2018) keeps one L2-normalised feature per dataset sample, updated as a
  running average, and samples negatives uniformly with the alias method
  (:class:`AliasMethod`). Keys: ``feature_bank``, ``multinomial.prob``,
  ``multinomial.alias`` (all buffers, as in MMSelfSup).
- ``ODCMemory`` (Zhan et al., "Online Deep Clustering for Unsupervised Representation
  Learning", 2020) keeps the features and pseudo-labels of all samples and the cluster
  centroids. As in MMSelfSup only ``centroids`` is a buffer (the one state_dict key); the
  feature and label banks are plain CPU tensors, filled by ``DeepClusterHook`` with
  ``init_memory=True`` before training.

Distributed runs gather the batch's indices and features from every rank with
``torch.distributed`` (the identity in one process); MMSelfSup's ODC memory moves tensors
to CUDA and calls ``dist`` unconditionally, vistra's runs on any device. ODC's split of
the largest cluster uses vistra's seeded torch k-means (``clustering.kmeans``) instead of
scikit-learn's ``KMeans(n_clusters=2, random_state=0, max_iter=20)``: same objective,
different initialisation, so the split can differ.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.selfsup.clustering import kmeans
from vistra.registry import MODELS


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """``x`` of every rank concatenated along dim 0 in rank order (no gradient); ``x``
    itself in one process. Every rank must hold the same number of rows."""
    if not _distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


class AliasMethod(nn.Module):
    """Constant-time sampling from a discrete distribution (Walker's alias method).

    ``prob`` and ``alias`` are buffers (MMSelfSup's keys). :meth:`draw` makes the same two
    random draws as MMSelfSup, in the same order: a uniform ``random_(0, K)`` of ``N``
    long integers, then ``bernoulli`` of their acceptance probabilities.
    """

    def __init__(self, probs: torch.Tensor) -> None:
        super().__init__()
        probs = torch.as_tensor(probs, dtype=torch.float32).flatten()
        if probs.numel() == 0 or (probs < 0).any():
            raise ValueError("AliasMethod probs must be a non-empty vector of weights >= 0")
        if probs.sum() > 1:
            probs = probs / probs.sum()
        k = probs.numel()
        # the table is built in float32 arithmetic with the same stack discipline as
        # MMSelfSup, so a bank built here equals one built there
        scaled = (probs * k).numpy().astype(np.float32)
        alias = np.zeros(k, dtype=np.int64)
        smaller = [i for i in range(k) if scaled[i] < 1.0]
        larger = [i for i in range(k) if scaled[i] >= 1.0]
        while smaller and larger:
            small, large = smaller.pop(), larger.pop()
            alias[small] = large
            scaled[large] = np.float32(scaled[large] - np.float32(1.0)) + scaled[small]
            (smaller if scaled[large] < 1.0 else larger).append(large)
        for rest in smaller + larger:
            scaled[rest] = 1.0
        self.register_buffer("prob", torch.from_numpy(scaled))
        self.register_buffer("alias", torch.from_numpy(alias))

    def draw(self, n: int) -> torch.Tensor:
        """``n`` samples (long indices) from the distribution."""
        if n <= 0:
            raise ValueError(f"AliasMethod.draw needs n > 0, got {n}")
        k = self.alias.size(0)
        column = torch.zeros(n, dtype=torch.long, device=self.prob.device).random_(0, k)
        accept = torch.bernoulli(self.prob.index_select(0, column)).long()
        return column * accept + self.alias.index_select(0, column) * (1 - accept)


@MODELS.register_module(name="SimpleMemory", scope="mmselfsup")
class SimpleMemory(BaseModule):
    """A bank of ``length`` unit features of size ``feat_dim``, each updated as
    ``normalize((1 - momentum) * old + momentum * new)``."""

    def __init__(self, length: int, feat_dim: int, momentum: float) -> None:
        super().__init__()
        if length < 1 or feat_dim < 1:
            raise ValueError(
                f"SimpleMemory length and feat_dim must be >= 1, got {length}, {feat_dim}"
            )
        self.register_buffer("feature_bank", nn.functional.normalize(torch.randn(length, feat_dim)))
        self.momentum = momentum
        self.multinomial = AliasMethod(torch.ones(length))

    @torch.no_grad()
    def update(self, idx: torch.Tensor, feature: torch.Tensor) -> None:
        """Blend the (gathered) ``feature`` rows into the bank at ``idx``."""
        feature = nn.functional.normalize(feature)
        idx, feature = all_gather_cat(idx), all_gather_cat(feature)
        old = self.feature_bank[idx]
        new = (1 - self.momentum) * old + self.momentum * feature
        self.feature_bank[idx] = nn.functional.normalize(new)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / (x.norm(dim=1, keepdim=True) + 1e-10)


@MODELS.register_module(name="ODCMemory", scope="mmselfsup")
class ODCMemory(BaseModule):
    """Samples memory (features, pseudo-labels) and centroids memory of ODC.

    ``min_cluster``: clusters smaller than this are dissolved into their nearest larger
    ones and the emptied slots re-filled by splitting the largest cluster in two.
    """

    def __init__(
        self,
        length: int,
        feat_dim: int,
        momentum: float,
        num_classes: int,
        min_cluster: int,
        debug: bool = False,
    ) -> None:
        super().__init__()
        if length < 1 or feat_dim < 1 or num_classes < 1:
            raise ValueError(
                "ODCMemory length, feat_dim and num_classes must be >= 1, got "
                f"{length}, {feat_dim}, {num_classes}"
            )
        # every rank keeps the bank (MMSelfSup: rank 0 only); the updates are the same
        # gathered rows on every rank, so the copies stay equal
        self.feature_bank = torch.zeros(length, feat_dim)
        self.label_bank = torch.zeros(length, dtype=torch.long)
        self.register_buffer("centroids", torch.zeros(num_classes, feat_dim))
        self.feat_dim = feat_dim
        self.initialized = False
        self.momentum = momentum
        self.num_classes = num_classes
        self.min_cluster = min_cluster
        self.debug = debug

    # ------------------------------------------------------------------ set-up
    def init_memory(self, feature: np.ndarray, label: np.ndarray) -> None:
        """Fill the banks from the clustering of the whole dataset (``DeepClusterHook``)."""
        label = np.asarray(label, dtype=np.int64)
        if not (np.bincount(label, minlength=self.num_classes) != 0).all():
            raise ValueError(
                "ODCMemory.init_memory: every one of the num_classes="
                f"{self.num_classes} clusters needs at least one sample"
            )
        self.initialized = True
        self.label_bank.copy_(torch.from_numpy(label))
        self.feature_bank.copy_(_unit_rows(torch.as_tensor(np.asarray(feature)).float()))
        self.centroids.copy_(self._compute_centroids().to(self.centroids))

    def _compute_centroids(self, classes: list[int] | None = None) -> torch.Tensor:
        """Mean feature of each class in ``classes`` (all non-empty ones when None: the
        others keep their current centroid)."""
        if classes is not None:
            return torch.stack(
                [self.feature_bank[self.label_bank == c].mean(dim=0) for c in classes]
            )
        centroids = self.centroids.detach().cpu().clone()
        sums = torch.zeros_like(centroids).index_add_(0, self.label_bank, self.feature_bank)
        counts = torch.bincount(self.label_bank, minlength=self.num_classes)
        present = counts > 0
        centroids[present] = sums[present] / counts[present, None].float()
        return centroids

    # ------------------------------------------------------------------ per iteration
    @torch.no_grad()
    def update_samples_memory(self, idx: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """Blend the batch into the features, relabel it by its nearest centroid and
        return the fraction of labels that changed."""
        if not self.initialized:
            raise RuntimeError(
                "ODCMemory is not initialised: the config needs a DeepClusterHook with "
                "init_memory=True (it clusters the dataset before training)"
            )
        idx, feature = all_gather_cat(idx), all_gather_cat(_unit_rows(feature))
        idx = idx.cpu()
        old = self.feature_bank[idx].to(feature)
        feature = _unit_rows((1 - self.momentum) * old + self.momentum * feature)
        self.feature_bank[idx] = feature.cpu()
        new_label = (self.centroids.to(feature) @ feature.t()).argmax(dim=0).cpu()
        change_ratio = (new_label != self.label_bank[idx]).sum().float() / new_label.numel()
        self.label_bank[idx] = new_label
        return change_ratio.to(feature.device)

    def update_centroids_memory(self, cinds: list[int] | None = None) -> None:
        """Recompute all centroids, or those of the classes ``cinds``."""
        if cinds is None:
            self.centroids.copy_(self._compute_centroids().to(self.centroids))
        else:
            index = torch.as_tensor(cinds, dtype=torch.long, device=self.centroids.device)
            self.centroids[index] = self._compute_centroids(cinds).to(self.centroids)

    def deal_with_small_clusters(self) -> None:
        """Move the samples of clusters under ``min_cluster`` to their nearest remaining
        centroid, then re-fill the emptied clusters."""
        histogram = np.bincount(self.label_bank.numpy(), minlength=self.num_classes)
        small = np.where(histogram < self.min_cluster)[0].tolist()
        if self.debug and _rank() == 0:
            print(f"mincluster: {histogram.min()}, num of small class: {len(small)}")
        if not small:
            return
        inclusion = torch.from_numpy(
            np.setdiff1d(np.arange(self.num_classes), np.array(small), assume_unique=True)
        )
        if inclusion.numel() == 0:
            raise ValueError(
                f"ODCMemory: every cluster is smaller than min_cluster={self.min_cluster}; "
                "lower min_cluster or num_classes"
            )
        centroids = self.centroids.detach().cpu()
        for s in small:
            members = (self.label_bank == s).nonzero().flatten()
            if members.numel():
                nearest = (centroids[inclusion] @ self.feature_bank[members].t()).argmax(dim=0)
                self.label_bank[members] = inclusion[nearest]
        self._redirect_empty_clusters(small)

    def _partition_max_cluster(self, max_cluster: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the two halves of cluster ``max_cluster`` (2-means; random halves
        when 2-means leaves one side empty)."""
        members = np.where(self.label_bank.numpy() == max_cluster)[0]
        if len(members) < 2:
            raise RuntimeError(f"ODCMemory: cluster {max_cluster} has fewer than 2 samples")
        features = self.feature_bank[members]
        if torch.isnan(features).any():
            raise FloatingPointError("ODCMemory: the feature bank has NaN features")
        labels = kmeans(features, 2, max_iter=20, seed=0)[0].numpy()
        first, second = members[labels == 0], members[labels == 1]
        if not (len(first) and len(second)):
            print("Warning: kmeans partition fails, resort to random partition.")
            # a fixed seed (MMSelfSup: numpy's global RNG) keeps every rank's copy equal
            first = np.random.RandomState(0).choice(members, len(members) // 2, replace=False)
            second = np.setdiff1d(members, first, assume_unique=True)
        return first, second

    def _redirect_empty_clusters(self, empty_clusters: list[int]) -> None:
        """Give each empty cluster half of the current largest one."""
        for e in empty_clusters:
            if (self.label_bank == e).any():
                raise RuntimeError(f"ODCMemory: cluster #{e} is not empty")
            max_cluster = int(
                np.bincount(self.label_bank.numpy(), minlength=self.num_classes).argmax()
            )
            _, second = self._partition_max_cluster(max_cluster)
            self.label_bank[torch.from_numpy(second)] = e
            self.update_centroids_memory([max_cluster, e])
