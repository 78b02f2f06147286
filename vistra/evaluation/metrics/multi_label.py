"""``MultiLabelMetric``: precision, recall and F1 of multi-label classification.

Same arguments, key names and numbers as MMPretrain 1.x: a class is predicted when its
score is at least ``thr`` (or is among the ``topk`` best); targets come from
``gt_score`` (0/1 per class, -1 for "difficult") or from the ``gt_label`` indices.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vistra.evaluation.functional import (
    AVERAGE_CHOICES,
    label_to_onehot,
    multilabel_precision_recall_f1_support,
    to_tensor,
)
from vistra.evaluation.metric import BaseMetric
from vistra.evaluation.metrics.accuracy import SINGLE_LABEL_ITEMS
from vistra.registry import METRICS, did_you_mean

logger = logging.getLogger(__name__)


@METRICS.register_module()
class MultiLabelMetric(BaseMetric):
    """Per-class precision/recall/F1 (percent) of a multi-label classifier.

    ``thr`` (default 0.5 when neither is given) wins over ``topk`` when both are set.
    Keys: ``precision`` etc. for ``thr=0.5``, ``precision_thr-0.30`` for another
    threshold, ``precision_top3`` for top-k; ``_classwise`` lists for ``average=None``,
    ``_micro`` for ``'micro'``.
    """

    default_prefix: str | None = "multi-label"

    def __init__(
        self,
        thr: float | None = None,
        topk: int | None = None,
        items: Sequence[str] = ("precision", "recall", "f1-score"),
        average: str | None = "macro",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if thr is None and topk is None:
            thr = 0.5
            logger.warning("MultiLabelMetric: neither thr nor topk is given, using thr=0.5")
        elif thr is not None and topk is not None:
            logger.warning("MultiLabelMetric: both thr and topk are given, using thr")
        items = (items,) if isinstance(items, str) else tuple(items)
        for item in items:
            if item not in SINGLE_LABEL_ITEMS:
                raise ValueError(
                    f"MultiLabelMetric(items=...) got {item!r}.{did_you_mean(item, SINGLE_LABEL_ITEMS)}"
                    f" Choose from {list(SINGLE_LABEL_ITEMS)}"
                )
        if average not in AVERAGE_CHOICES:
            raise ValueError(
                f"MultiLabelMetric(average=...) must be one of {list(AVERAGE_CHOICES)}, got {average!r}"
            )
        self.thr = thr
        self.topk = topk
        self.items = items
        self.average = average

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if "pred_score" not in sample:
                raise KeyError("MultiLabelMetric needs 'pred_score' in every data sample")
            score = sample["pred_score"].detach().cpu().clone()
            if "gt_score" in sample:
                target = sample["gt_score"].detach().cpu().clone()
            elif "gt_label" in sample:
                target = label_to_onehot(sample["gt_label"].cpu(), score.size(-1))
            else:
                raise KeyError("MultiLabelMetric needs 'gt_score' or 'gt_label' in every sample")
            self.results.append({"pred_score": score, "gt_score": target})

    def compute_metrics(self, results: list) -> dict[str, Any]:
        if not results:
            raise ValueError("MultiLabelMetric got no results to evaluate")
        target = torch.stack([r["gt_score"] for r in results])
        pred = torch.stack([r["pred_score"] for r in results])
        values = self.calculate(pred, target, average=self.average, thr=self.thr, topk=self.topk)
        # MMPretrain's names: the threshold suffix only when thr is truthy (so thr=0.0
        # is named like top-k, "_topNone"), none for the default 0.5.
        if self.thr:
            suffix = "" if self.thr == 0.5 else f"_thr-{self.thr:.2f}"
        else:
            suffix = f"_top{self.topk}"
        named = {
            item + suffix: value
            for item, value in zip(SINGLE_LABEL_ITEMS, values)
            if item in self.items
        }
        if self.average is None:
            return {f"{k}_classwise": v.detach().cpu().tolist() for k, v in named.items()}
        if self.average == "micro":
            return {f"{k}_micro": v.item() for k, v in named.items()}
        return {k: v.item() for k, v in named.items()}

    @staticmethod
    def calculate(
        pred: torch.Tensor | np.ndarray | Sequence,
        target: torch.Tensor | np.ndarray | Sequence,
        pred_indices: bool = False,
        target_indices: bool = False,
        average: str | None = "macro",
        thr: float | None = None,
        topk: int | None = None,
        num_classes: int | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """``(precision, recall, f1-score, support)`` from ``(N, C)`` scores and targets.

        With ``pred_indices``/``target_indices`` the inputs are sequences of class-index
        lists (then ``num_classes`` is needed).
        """
        if average not in AVERAGE_CHOICES:
            raise ValueError(f"average must be one of {list(AVERAGE_CHOICES)}, got {average!r}")
        pred = _as_matrix(pred, pred_indices, num_classes, "pred")
        target = _as_matrix(target, target_indices, num_classes, "target").long()
        if pred.shape != target.shape:
            raise ValueError(
                f"The size of pred ({tuple(pred.shape)}) doesn't match the target "
                f"({tuple(target.shape)})."
            )
        if num_classes is not None and pred.size(1) != num_classes:
            raise ValueError(f"pred has {pred.size(1)} classes but num_classes is {num_classes}")
        if thr is None and topk is None:
            thr = 0.5
        if thr is not None:
            positive = (pred >= thr).long()
        else:
            _, index = pred.topk(topk)
            positive = torch.zeros_like(pred).scatter_(1, index, 1).long()
        return multilabel_precision_recall_f1_support(positive, target, average)


def _as_matrix(value: Any, is_indices: bool, num_classes: int | None, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor | np.ndarray):
        value = to_tensor(value)
        if value.ndim != 2:
            raise ValueError(f"{what} must have shape (N, num_classes), got {tuple(value.shape)}")
        return value
    if not isinstance(value, Sequence):
        raise TypeError(f"{what} must be a tensor, an array or a sequence, got {type(value)}")
    if is_indices:
        if num_classes is None:
            raise ValueError(f"{what} holds class indices: give num_classes")
        return torch.stack([label_to_onehot(v, num_classes) for v in value])
    return torch.stack([to_tensor(v) for v in value])
