"""Clustering for DeepCluster and ODC (Caron et al., "Deep Clustering for Unsupervised
Learning of Visual Features", 2018): PCA whitening and k-means in plain torch.

MMSelfSup's ``Kmeans`` (``clustering=dict(type='Kmeans', k=..., pca_dim=...)`` in the
``DeepClusterHook`` config) runs faiss on a GPU: PCA to ``pca_dim`` with whitening
(``eigen_power=-0.5``), L2 normalisation, then 20 Lloyd iterations from ``k`` random
points, splitting a large cluster whenever one runs empty. vistra computes the same
steps with ``torch`` on the features' device, seeded by a ``torch.Generator``: the
objective and the preprocessing are faiss's, the random initial centroids are not
(faiss's own RNG), so the labels of a run are reproducible in vistra but differ from
upstream's. The clustering is a preprocessing step, not a model part: no state_dict.
"""

from __future__ import annotations

import numpy as np
import torch


def preprocess_features(features: torch.Tensor, pca_dim: int = -1) -> torch.Tensor:
    """PCA-reduce to ``pca_dim`` (-1: keep all), whiten, and L2-normalise rows."""
    if torch.isnan(features).any():
        raise FloatingPointError("clustering: the features contain NaN")
    x = features.float()
    if pca_dim != -1:
        if not 0 < pca_dim <= x.size(1):
            raise ValueError(f"pca_dim must be -1 or in 1..{x.size(1)}, got {pca_dim}")
        mean = x.mean(dim=0, keepdim=True)
        centred = x - mean
        cov = centred.t() @ centred / x.size(0)
        eigval, eigvec = torch.linalg.eigh(cov.double())  # ascending
        eigval, eigvec = eigval.flip(0)[:pca_dim], eigvec.flip(1)[:, :pca_dim]
        # whitening divides by sqrt(eigenvalue); a zero eigenvalue would give inf/NaN
        scale = eigval.clamp_min(1e-12).rsqrt()
        x = (centred.double() @ eigvec * scale).float()
        x = torch.nan_to_num(x)
    return x / (x.norm(dim=1, keepdim=True) + 1e-10)


def kmeans(
    x: torch.Tensor, k: int, max_iter: int = 20, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Lloyd's k-means of the rows of ``x``: ``(labels, centroids, loss)``.

    The initial centroids are ``k`` distinct rows drawn with a generator seeded by
    ``seed``; an empty cluster takes a slightly perturbed copy of the largest cluster's
    centroid (faiss's split); one still empty at the end takes the sample farthest from
    its centroid, so every cluster has a member. ``loss`` is the summed squared distance to the centroids.
    """
    n = x.size(0)
    if not 1 <= k <= n:
        raise ValueError(f"kmeans needs 1 <= k <= number of samples ({n}), got k={k}")
    x = x.float()
    gen = torch.Generator().manual_seed(seed)
    centroids = x[torch.randperm(n, generator=gen)[:k].to(x.device)].clone()
    labels = torch.zeros(n, dtype=torch.long, device=x.device)
    for _ in range(max(1, max_iter)):
        labels = torch.cdist(x, centroids).argmin(dim=1)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        present = counts > 0
        centroids[present] = sums[present] / counts[present, None].float()
        for empty in (~present).nonzero().flatten().tolist():
            big = int(counts.argmax())
            noise = torch.randn(x.size(1), generator=gen).to(x) * 1e-4
            centroids[empty] = centroids[big] + noise
            centroids[big] = centroids[big] - noise
            counts[big] //= 2
    dist = torch.cdist(x, centroids)
    labels = dist.argmin(dim=1)
    # (near-)duplicate points can still leave a cluster empty: give it the sample farthest
    # from its centroid among clusters of two or more, so every cluster is used
    for empty in range(k):
        if (labels == empty).any():
            continue
        counts = torch.bincount(labels, minlength=k)
        own = dist.gather(1, labels[:, None]).squeeze(1).masked_fill(counts[labels] < 2, -1.0)
        moved = int(own.argmax())
        labels[moved] = empty
        centroids[empty] = x[moved]
        dist[:, empty] = torch.cdist(x, x[moved : moved + 1]).squeeze(1)
    loss = float(dist.gather(1, labels[:, None]).pow(2).sum())
    return labels.cpu(), centroids, loss


class Kmeans:
    """MMSelfSup's ``Kmeans(k, pca_dim)``: ``cluster(features)`` sets ``labels`` (a numpy
    int64 array, one cluster id per sample) and returns the k-means loss."""

    def __init__(self, k: int, pca_dim: int | None = 256, seed: int = 0) -> None:
        if k < 1:
            raise ValueError(f"Kmeans k must be >= 1, got {k}")
        self.k = k
        self.pca_dim = -1 if pca_dim is None else pca_dim
        self.seed = seed
        self.labels: np.ndarray | None = None

    def cluster(self, feat: np.ndarray | torch.Tensor, verbose: bool = False) -> float:
        x = preprocess_features(
            torch.as_tensor(np.asarray(feat) if not torch.is_tensor(feat) else feat), self.pca_dim
        )
        labels, _, loss = kmeans(x, self.k, max_iter=20, seed=self.seed)
        self.labels = labels.numpy().astype(np.int64)
        if verbose:
            print(f"k-means loss: {loss:.6g}")
        return loss


# the clustering types a DeepClusterHook config may name
CLUSTERING = {"Kmeans": Kmeans}
