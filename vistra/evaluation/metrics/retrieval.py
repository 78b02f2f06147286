"""Image-retrieval metrics (MMPretrain's ``RetrievalRecall`` and
``RetrievalAveragePrecision``), with the same arguments, key names and numbers.

Each evaluated sample is one query: ``pred_score`` holds its similarity to every gallery
item (M values), and its relevant gallery items come as ``gt_score`` (an (M,) vector,
non-zero meaning relevant) or as ``gt_label`` (their indices). Both metrics rank the
gallery by score, best first, and look at the top ``k`` ranks:

- ``Recall@k``: the percentage of queries with a relevant item among their top ``k``;
- ``mAP@k``: the mean over queries of the average precision of the top ``k``, in percent.
  With ``mode='IR'`` (information retrieval) a query's AP is the sum of the precision at
  each relevant rank ``r`` of the top ``k`` (the ``i``-th relevant one: ``i / r``,
  1-based), divided by the number of relevant items in the whole gallery;
  ``mode='integrate'`` integrates the precision-recall curve with the trapezoid rule
  instead (the average of the precision just before and at each relevant rank; the
  Revisited Oxford/Paris convention).

Where upstream fails, these do not: a ``k`` larger than the gallery ranks the whole
gallery, and a query without any relevant item has AP 0 (upstream divides by zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vistra.evaluation.functional import label_to_onehot
from vistra.evaluation.metric import BaseMetric
from vistra.registry import METRICS

AP_MODES = ("IR", "integrate")


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be an integer larger than 0, got {value!r}")
    return int(value)


def relevant_ranks(ranked: Sequence[int], relevant: set[int]) -> list[int]:
    """0-based ranks of the ``relevant`` items in the ``ranked`` list (best first)."""
    return [rank for rank, item in enumerate(ranked) if item in relevant]


def _top_k(score: torch.Tensor, k: int) -> list[int]:
    """The indices of the ``k`` best scores, best first (the whole list if k > len)."""
    return score.topk(min(k, score.size(-1)), dim=-1).indices.tolist()


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value
    if what == "target" and isinstance(value, Sequence) and not isinstance(value, str):
        return torch.tensor(value)
    raise TypeError(
        f"{what} must be a torch.Tensor or np.ndarray (N, M), got {type(value).__name__}"
    )


def _ranked_lists(pred: Any, k: int, is_indices: bool) -> list[list[int]]:
    """Per sample, its best ``k`` gallery indices: from (N, M) scores, or cut from the
    ranked index lists themselves (``is_indices``)."""
    if is_indices:
        return [[int(i) for i in list(row)[:k]] for row in pred]
    scores = _as_tensor(pred, "pred")
    return [_top_k(row, k) for row in scores]


def _relevant_sets(target: Any, is_indices: bool) -> list[set[int]]:
    """Per sample, the set of its relevant gallery indices: from (N, M) vectors (non-zero
    is relevant) or index lists (``is_indices``)."""
    if is_indices:
        return [{int(i) for i in list(row)} for row in target]
    return [set(torch.nonzero(row).reshape(-1).tolist()) for row in _as_tensor(target, "target")]


def average_precision_at_k(ranks: Sequence[int], num_relevant: int, mode: str = "IR") -> float:
    """AP (percent) of one query from the 0-based ranks of its retrieved relevant items
    (ascending) and its number of relevant items in the gallery."""
    if num_relevant == 0:
        return 0.0
    total = 0.0
    # summed one rank at a time in float64, the order MMPretrain adds them in, so that
    # the values are equal, not merely close
    for i, rank in enumerate(ranks):
        precision = (i + 1) / (rank + 1)
        if mode == "integrate":
            before = i / rank if rank > 0 else 1
            precision = (before + precision) / 2
        total += precision
    return total / num_relevant * 100


class _RetrievalMetric(BaseMetric):
    default_prefix = "retrieval"

    def _relevant(self, sample: dict, num_items: int) -> set[int]:
        """The gallery indices relevant to the query."""
        if "gt_score" in sample:
            target = torch.as_tensor(sample["gt_score"]).detach().cpu()
        elif "gt_label" in sample:
            target = label_to_onehot(torch.as_tensor(sample["gt_label"]).cpu(), num_items)
        else:
            raise KeyError(f"{type(self).__name__} needs 'gt_score' or 'gt_label' in every sample")
        if target.numel() != num_items:
            raise ValueError(
                f"{type(self).__name__}: gt_score has {target.numel()} entries but pred_score "
                f"scores {num_items} gallery items"
            )
        return set(torch.nonzero(target.reshape(-1)).reshape(-1).tolist())

    def _scored(self, data_samples: Sequence[dict]) -> list[tuple[torch.Tensor, set[int]]]:
        out = []
        for sample in data_samples:
            if "pred_score" not in sample:
                raise KeyError(f"{type(self).__name__} needs 'pred_score' in every data sample")
            score = torch.as_tensor(sample["pred_score"]).detach().cpu().reshape(-1)
            out.append((score, self._relevant(sample, score.numel())))
        return out


@METRICS.register_module()
class RetrievalRecall(_RetrievalMetric):
    """``Recall@k`` for each ``k`` of ``topk`` (an int or a sequence of them)."""

    def __init__(
        self,
        topk: int | Sequence[int],
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        ks = (topk,) if isinstance(topk, (int, np.integer)) else tuple(topk)
        if not ks:
            raise ValueError("RetrievalRecall topk must name at least one k")
        self.topk = tuple(_positive_int(k, "RetrievalRecall topk") for k in ks)
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for score, relevant in self._scored(data_samples):
            ranks = relevant_ranks(_top_k(score, max(self.topk)), relevant)
            self.results.append([100.0 if ranks and ranks[0] < k else 0.0 for k in self.topk])

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            raise ValueError("RetrievalRecall got no results to evaluate")
        return {
            f"Recall@{k}": sum(r[i] for r in results) / len(results)
            for i, k in enumerate(self.topk)
        }

    @staticmethod
    def calculate(
        pred: torch.Tensor | np.ndarray | Sequence,
        target: torch.Tensor | np.ndarray | Sequence,
        topk: int | Sequence[int],
        pred_indices: bool = False,
        target_indices: bool = False,
    ) -> list[torch.Tensor]:
        """Recall@k (percent, one 0-d tensor per k) of N queries at once, as MMPretrain's:
        ``pred`` (N, M) scores, or per-query ranked gallery indices (``pred_indices``);
        ``target`` (N, M) relevance, or per-query relevant indices (``target_indices``)."""
        ks = (topk,) if isinstance(topk, (int, np.integer)) else tuple(topk)
        ks = tuple(_positive_int(k, "RetrievalRecall topk") for k in ks)
        ranked = _ranked_lists(pred, max(ks), pred_indices)
        relevant = _relevant_sets(target, target_indices)
        if len(ranked) != len(relevant):
            raise ValueError(f"pred has {len(ranked)} queries but target {len(relevant)}")
        firsts = [relevant_ranks(r, t)[:1] for r, t in zip(ranked, relevant)]
        return [
            torch.tensor([float(bool(f) and f[0] < k) for f in firsts]).mean() * 100 for k in ks
        ]


@METRICS.register_module()
class RetrievalAveragePrecision(_RetrievalMetric):
    """``mAP@topk``; ``mode`` is ``'IR'`` or ``'integrate'`` (see the module docstring)."""

    def __init__(
        self,
        topk: int | None = None,
        mode: str = "IR",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        self.topk = _positive_int(topk, "RetrievalAveragePrecision topk")
        if mode not in AP_MODES:
            raise ValueError(
                f"RetrievalAveragePrecision mode={mode!r} is not supported; choose from {AP_MODES}"
            )
        self.mode = mode
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for score, relevant in self._scored(data_samples):
            ranks = relevant_ranks(_top_k(score, self.topk), relevant)
            self.results.append(average_precision_at_k(ranks, len(relevant), self.mode))

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            raise ValueError("RetrievalAveragePrecision got no results to evaluate")
        # np.mean's pairwise summation, as MMPretrain's, for equal values
        return {f"mAP@{self.topk}": np.mean(results).item()}

    @staticmethod
    def calculate(
        pred: torch.Tensor | np.ndarray | Sequence,
        target: torch.Tensor | np.ndarray | Sequence,
        topk: int | None = None,
        pred_indices: bool = False,
        target_indices: bool = False,
        mode: str = "IR",
    ) -> float:
        """mAP@topk (percent) of N queries at once, as MMPretrain's; ``pred`` and ``target``
        as in :meth:`RetrievalRecall.calculate`."""
        k = _positive_int(topk, "RetrievalAveragePrecision topk")
        if mode not in AP_MODES:
            raise ValueError(f"RetrievalAveragePrecision mode={mode!r}: choose from {AP_MODES}")
        ranked = _ranked_lists(pred, k, pred_indices)
        relevant = _relevant_sets(target, target_indices)
        if len(ranked) != len(relevant):
            raise ValueError(f"pred has {len(ranked)} queries but target {len(relevant)}")
        aps = [
            average_precision_at_k(relevant_ranks(r, t), len(t), mode)
            for r, t in zip(ranked, relevant)
        ]
        return float(np.mean(aps))
