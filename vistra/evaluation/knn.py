"""Weighted k-nearest-neighbour classification of frozen features (MMSelfSup's kNN benchmark).

The protocol of Wu et al. (2018), as DINO and MMSelfSup run it: L2-normalise the features;
for each test feature take the ``k`` training features of highest cosine similarity ``s``;
each neighbour votes for its class with weight ``exp(s / T)`` (``T = 0.07``); classes are
ranked by their summed votes. Accuracies are in percent. Test features are processed in
chunks so that the ``(chunk, num_train)`` similarity matrix stays within a fixed budget.

:func:`extract_features` runs a model over a dataloader and returns the pooled backbone
features and labels of the whole dataset, gathered from every rank in dataset order; the
``tools/benchmarks/knn.py`` front-end combines both.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vistra.dist import collect_results

# Elements of the (chunk, num_train) similarity matrix computed at once: 64 MiB in fp32.
SIMILARITY_BUDGET = 1 << 24


def _check_inputs(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
) -> None:
    for name, feats, labels in (
        ("train", train_features, train_labels),
        ("test", test_features, test_labels),
    ):
        if feats.ndim != 2 or labels.ndim != 1 or feats.shape[0] != labels.shape[0]:
            raise ValueError(
                f"kNN needs {name} features (N, C) and labels (N,) with the same N; got "
                f"{tuple(feats.shape)} and {tuple(labels.shape)}"
            )
    if train_features.shape[0] == 0:
        raise ValueError("kNN needs at least one training feature")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train and test features differ in width: {train_features.shape[1]} vs "
            f"{test_features.shape[1]}"
        )


def knn_eval_many(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Iterable[int],
    T: float = 0.07,
    num_classes: int | None = None,
    normalize: bool = True,
    chunk_size: int | None = None,
) -> dict[int, tuple[float, float]]:
    """``{k: (top1, top5)}`` in percent for every ``k`` in ``ks``, from one neighbour search.

    ``num_classes`` defaults to the largest label plus one. A ``k`` above the number of
    training features uses them all. Top-5 counts a sample when its class is among the five
    best-voted classes *that received votes* (with fewer than five voted classes, unvoted
    ones are not guessed); with ``k < 5`` at most ``k`` classes can be voted for.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"kNN needs k >= 1, got {ks}")
    if T <= 0:
        raise ValueError(f"kNN temperature must be > 0, got {T}")
    _check_inputs(train_features, train_labels, test_features, test_labels)
    train_labels = train_labels.long().to(train_features.device)
    test_labels = test_labels.long().to(train_features.device)
    if num_classes is None:
        num_classes = int(torch.cat([train_labels, test_labels]).max()) + 1
    if int(train_labels.min()) < 0 or int(train_labels.max()) >= num_classes:
        raise ValueError(
            f"training labels must lie in [0, {num_classes}); got {int(train_labels.min())} "
            f"to {int(train_labels.max())}"
        )
    train = train_features.float()
    test = test_features.float().to(train.device)
    if normalize:
        train = F.normalize(train, dim=1)
        test = F.normalize(test, dim=1)
    max_k = min(ks[-1], train.shape[0])
    if chunk_size is None:
        chunk_size = max(1, SIMILARITY_BUDGET // train.shape[0])
    hits = {k: torch.zeros(2, dtype=torch.long) for k in ks}
    for start in range(0, test.shape[0], chunk_size):
        similarity = test[start : start + chunk_size] @ train.T
        sims, indices = similarity.topk(max_k, dim=1)  # sorted, most similar first
        labels = test_labels[start : start + chunk_size]
        # exp(s / T) up to a factor per test sample (the best neighbour's weight is 1):
        # the class ranking is the same, and unnormalised features cannot overflow.
        weights = ((sims - sims[:, :1]) / T).exp()
        neighbour_labels = train_labels[indices]
        for k in ks:
            top1, top5 = _vote(weights[:, :k], neighbour_labels[:, :k], labels, num_classes)
            hits[k] += torch.stack([top1, top5]).cpu()
    total = max(test.shape[0], 1)
    return {k: (hits[k][0].item() * 100.0 / total, hits[k][1].item() * 100.0 / total) for k in ks}


def _vote(
    weights: torch.Tensor, neighbour_labels: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Numbers of top-1 and top-5 hits in one chunk: weights summed per class."""
    votes = weights.new_zeros(weights.shape[0], num_classes)
    votes.scatter_add_(1, neighbour_labels, weights)
    scores, ranked = votes.topk(min(5, num_classes), dim=1)
    correct = (ranked == labels[:, None]) & (scores > 0)
    return correct[:, 0].sum(), correct.any(dim=1).sum()


def knn_eval(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int,
    T: float = 0.07,
    num_classes: int | None = None,
    normalize: bool = True,
    chunk_size: int | None = None,
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (%) of the weighted ``k``-NN classifier (MMSelfSup's
    ``knn_eval`` arguments); see :func:`knn_eval_many`."""
    result = knn_eval_many(
        train_features,
        train_labels,
        test_features,
        test_labels,
        [k],
        T=T,
        num_classes=num_classes,
        normalize=normalize,
        chunk_size=chunk_size,
    )
    return result[int(k)]


# ---------------------------------------------------------------------------- features
def pool_features(output: Any, cls_token: bool = True) -> torch.Tensor:
    """One ``(N, C)`` feature per image from a backbone's output.

    A tuple of stages gives its last stage (a stage that is a list, MMPretrain 0.x
    ``[patch_tokens, cls_token]``, its last entry); ``(N, C, H, W)`` maps are averaged over
    space; ``(N, L, C)`` token sequences give their class token (first token) when
    ``cls_token``, else the mean token; ``(N, C)`` is returned as it is.
    """
    while isinstance(output, (tuple, list)):
        if not output:
            raise ValueError("the backbone returned an empty tuple of features")
        output = output[-1]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"cannot pool backbone output of type {type(output).__name__}")
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    if output.ndim == 3:
        return output[:, 0] if cls_token else output.mean(dim=1)
    if output.ndim == 2:
        return output
    raise ValueError(f"cannot pool a backbone output of shape {tuple(output.shape)}")


def backbone_output(model: nn.Module, inputs: torch.Tensor) -> Any:
    """The backbone features of a batch: ``extract_feat(inputs, stage='backbone')`` for a
    classifier, ``extract_feat(inputs)`` for a self-supervised model (its unmasked
    backbone), else ``model(inputs, mode='tensor')``."""
    extract = getattr(model, "extract_feat", None)
    if extract is None:
        return model(inputs, mode="tensor")
    if "stage" in inspect.signature(extract).parameters:
        return extract(inputs, stage="backbone")
    return extract(inputs)


def has_cls_token(model: nn.Module) -> bool:
    """Whether the model's backbone puts a class token first in its token sequences."""
    backbone = getattr(model, "backbone", model)
    return getattr(backbone, "cls_token", None) is not None


@torch.no_grad()
def extract_features(
    model: nn.Module, dataloader: Iterable[dict], size: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Features ``(size, C)`` and labels ``(size,)`` of a dataset, in dataset order.

    Every rank runs its shard (``DefaultSampler(shuffle=False)``); the results are gathered
    to rank 0 with :func:`vistra.dist.collect_results`, which also drops the samples a
    sampler repeated. Other ranks get None. Samples need a ``gt_label``.
    """
    model.eval()
    cls_token = has_cls_token(model)
    records: list[tuple[torch.Tensor, int]] = []
    for batch in dataloader:
        data = model.data_preprocessor(batch, training=False)
        inputs = data["inputs"]
        if isinstance(inputs, (list, tuple)):  # a multi-view preprocessor: the first view
            inputs = inputs[0]
        feats = pool_features(backbone_output(model, inputs), cls_token).float().cpu()
        samples = data.get("data_samples") or []
        if len(samples) != feats.shape[0] or not all("gt_label" in s for s in samples):
            raise ValueError(
                "kNN evaluation needs a gt_label for every sample; the dataset's pipeline "
                "must pack labels (PackInputs)"
            )
        # clone: a row view would carry the whole batch tensor through the gather
        records += [(f.clone(), int(s.gt_label.reshape(-1)[0])) for f, s in zip(feats, samples)]
    gathered = collect_results(records, size)
    if gathered is None:
        return None
    if not gathered:
        raise ValueError("the dataset is empty: no features to compare")
    features = torch.stack([f for f, _ in gathered])
    labels = torch.tensor([label for _, label in gathered], dtype=torch.long)
    return features, labels


__all__ = [
    "backbone_output",
    "extract_features",
    "knn_eval",
    "knn_eval_many",
    "pool_features",
]
