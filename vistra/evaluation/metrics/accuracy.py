"""Single-label classification metrics: ``Accuracy`` and ``SingleLabelMetric``.

Same constructor arguments, result keys and numbers as MMPretrain 1.x, so configs and
logged metric names (``accuracy/top1``, ``single-label/f1-score``) carry over. Values are
percentages computed in float32, as MMPretrain computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vistra.evaluation.functional import (
    AVERAGE_CHOICES,
    confusion_matrix,
    label_accuracy,
    precision_recall_f1_support,
    to_tensor,
    topk_accuracy,
)
from vistra.evaluation.metric import BaseMetric
from vistra.evaluation.metrics.device_results import DeviceResults
from vistra.registry import METRICS, did_you_mean

Thresholds = float | Sequence[float | None] | None
SINGLE_LABEL_ITEMS = ("precision", "recall", "f1-score", "support")


def _as_thresholds(thrs: Thresholds, arg: str = "thrs") -> tuple[float | None, ...]:
    if thrs is None or isinstance(thrs, (int, float)):
        return (thrs,)
    out = tuple(thrs)
    if not out or not all(t is None or isinstance(t, (int, float)) for t in out):
        raise TypeError(
            f"{arg} must be a number, None or a non-empty sequence of them, got {thrs!r}"
        )
    return out


def _threshold_suffix(thr: float | None) -> str:
    # The names MMPretrain gives when several thresholds are evaluated at once.
    return "_no-thr" if thr is None else f"_thr-{thr:.2f}"


def _collect_targets(results: list[dict], metric: str) -> torch.Tensor:
    if not results:
        raise ValueError(
            f"{metric} got no results to evaluate: process() was never called with samples, "
            "or the dataset is empty"
        )
    return torch.cat([r["gt_label"].reshape(-1) for r in results])


def _require(sample: Any, key: str, metric: str) -> Any:
    if key not in sample:
        keys = sorted(sample.keys()) if hasattr(sample, "keys") else []
        raise KeyError(f"{metric} needs {key!r} in every data sample; got keys {keys}")
    return sample[key]


@METRICS.register_module()
class Accuracy(DeviceResults, BaseMetric):
    """Top-k accuracy: the share of samples whose label is among the k best scores.

    ``thrs``: a score must be strictly above the threshold to count (``None``: no
    threshold). With several thresholds every key gets a ``_thr-0.50`` style suffix.
    Samples that carry only ``pred_label`` give ``top1`` alone.
    """

    default_prefix: str | None = "accuracy"

    def __init__(
        self,
        topk: int | Sequence[int] = (1,),
        thrs: Thresholds = 0.0,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = (topk,) if isinstance(topk, int) else tuple(topk)
        if not self.topk or not all(isinstance(k, int) and k >= 1 for k in self.topk):
            raise ValueError(f"Accuracy(topk=...) must be positive integers, got {topk!r}")
        self.thrs = _as_thresholds(thrs)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            # left on the device: DeviceResults copies them to the CPU in batches
            result = {"gt_label": _require(sample, "gt_label", "Accuracy")}
            if "pred_score" in sample:
                result["pred_score"] = sample["pred_score"]
            else:
                result["pred_label"] = _require(sample, "pred_label", "Accuracy")
            self.results.append(result)
        self.settle_results()

    def compute_metrics(self, results: list) -> dict[str, float]:
        target = _collect_targets(results, "Accuracy")
        if "pred_score" not in results[0]:
            pred = torch.cat([r["pred_label"].reshape(-1) for r in results])
            return {"top1": self.calculate(pred, target).item()}
        pred = torch.stack([r["pred_score"] for r in results])
        try:
            acc = self.calculate(pred, target, self.topk, self.thrs)
        except ValueError as exc:
            raise ValueError(
                f"{exc} Check `topk` of Accuracy in `val_evaluator`/`test_evaluator` of the config."
            ) from exc
        metrics = {}
        many_thrs = len(self.thrs) > 1
        for i, k in enumerate(self.topk):
            for j, thr in enumerate(self.thrs):
                name = f"top{k}" + (_threshold_suffix(thr) if many_thrs else "")
                metrics[name] = acc[i][j].item()
        return metrics

    @staticmethod
    def calculate(
        pred: torch.Tensor | np.ndarray | Sequence,
        target: torch.Tensor | np.ndarray | Sequence,
        topk: Sequence[int] = (1,),
        thrs: Sequence[float | None] = (0.0,),
    ) -> torch.Tensor | list[list[torch.Tensor]]:
        """Accuracy in percent.

        ``pred`` of labels ``(N,)`` gives one top-1 tensor of shape ``(1,)`` (``topk`` and
        ``thrs`` unused); ``pred`` of scores ``(N, C)`` gives ``[k_index][thr_index]``.
        """
        pred = to_tensor(pred)
        target = to_tensor(target).to(torch.int64)
        if pred.size(0) != target.size(0):
            raise ValueError(
                f"The size of pred ({pred.size(0)}) doesn't match the target ({target.size(0)})."
            )
        if pred.ndim == 1:
            return label_accuracy(pred, target)
        return topk_accuracy(pred, target, topk, thrs)


@METRICS.register_module()
class SingleLabelMetric(DeviceResults, BaseMetric):
    """Precision, recall, F1-score and support of single-label classification.

    ``average='macro'`` averages the per-class values, ``'micro'`` computes them from the
    summed counts (keys get ``_micro``), ``None`` reports every class (keys get
    ``_classwise``, values are lists). A prediction whose score is not above ``thr``
    counts as no class. Samples without ``pred_score`` need ``num_classes``.
    """

    default_prefix: str | None = "single-label"

    def __init__(
        self,
        thrs: Thresholds = 0.0,
        items: Sequence[str] = ("precision", "recall", "f1-score"),
        average: str | None = "macro",
        num_classes: int | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.thrs = _as_thresholds(thrs)
        items = (items,) if isinstance(items, str) else tuple(items)
        for item in items:
            if item not in SINGLE_LABEL_ITEMS:
                raise ValueError(
                    f"SingleLabelMetric(items=...) got {item!r}.{did_you_mean(item, SINGLE_LABEL_ITEMS)}"
                    f" Choose from {list(SINGLE_LABEL_ITEMS)}"
                )
        if average not in AVERAGE_CHOICES:
            raise ValueError(
                f"SingleLabelMetric(average=...) must be one of {list(AVERAGE_CHOICES)}, got {average!r}"
            )
        self.items = items
        self.average = average
        self.num_classes = num_classes

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            result: dict[str, Any] = {"gt_label": _require(sample, "gt_label", "SingleLabelMetric")}
            if "pred_score" in sample:
                result["pred_score"] = sample["pred_score"]
            else:
                num_classes = self.num_classes or sample.get("num_classes")
                if num_classes is None:
                    raise ValueError(
                        "SingleLabelMetric needs `num_classes` (argument or sample field) "
                        "when samples carry `pred_label` without `pred_score`"
                    )
                result["pred_label"] = _require(sample, "pred_label", "SingleLabelMetric")
                result["num_classes"] = num_classes
            self.results.append(result)
        self.settle_results()

    def compute_metrics(self, results: list) -> dict[str, Any]:
        target = _collect_targets(results, "SingleLabelMetric")
        named: dict[str, torch.Tensor] = {}
        if "pred_score" in results[0]:
            pred = torch.stack([r["pred_score"] for r in results])
            per_thr = self.calculate(pred, target, thrs=self.thrs, average=self.average)
            many_thrs = len(self.thrs) > 1
            for thr, values in zip(self.thrs, per_thr):
                suffix = _threshold_suffix(thr) if many_thrs else ""
                named.update({k + suffix: v for k, v in self._pick_items(values).items()})
        else:
            pred = torch.cat([r["pred_label"].reshape(-1) for r in results])
            values = self.calculate(
                pred, target, average=self.average, num_classes=results[0]["num_classes"]
            )
            named = self._pick_items(values)
        if self.average is None:
            return {f"{k}_classwise": v.cpu().detach().tolist() for k, v in named.items()}
        if self.average == "micro":
            return {f"{k}_micro": v.item() for k, v in named.items()}
        return {k: v.item() for k, v in named.items()}

    def _pick_items(self, values: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        by_name = dict(zip(SINGLE_LABEL_ITEMS, values))
        return {item: by_name[item] for item in SINGLE_LABEL_ITEMS if item in self.items}

    @staticmethod
    def calculate(
        pred: torch.Tensor | np.ndarray | Sequence,
        target: torch.Tensor | np.ndarray | Sequence,
        thrs: Sequence[float | None] = (0.0,),
        average: str | None = "macro",
        num_classes: int | None = None,
    ) -> tuple[torch.Tensor, ...] | list[tuple[torch.Tensor, ...]]:
        """``(precision, recall, f1-score, support)``, once per threshold for scores.

        ``pred`` of labels ``(N,)`` needs ``num_classes`` and ignores ``thrs``; ``pred``
        of scores ``(N, C)`` gives a list with one tuple per threshold.
        """
        if average not in AVERAGE_CHOICES:
            raise ValueError(f"average must be one of {list(AVERAGE_CHOICES)}, got {average!r}")
        pred = to_tensor(pred)
        target = to_tensor(target).to(torch.int64).reshape(-1)
        if pred.size(0) != target.size(0):
            raise ValueError(
                f"The size of pred ({pred.size(0)}) doesn't match the target ({target.size(0)})."
            )
        if pred.ndim == 1:
            if num_classes is None:
                raise ValueError(
                    "SingleLabelMetric.calculate needs num_classes when pred holds labels"
                )
            matrix = confusion_matrix(pred, target, num_classes)
            return precision_recall_f1_support(matrix, average)
        num_classes = pred.size(1)
        top_score, top_label = torch.topk(pred, k=1)
        top_score, top_label = top_score.flatten(), top_label.flatten()
        gt_count = torch.bincount(target, minlength=num_classes)
        out = []
        for thr in thrs:
            label = top_label if thr is None else torch.where(top_score > thr, top_label, -1)
            matrix = confusion_matrix(label, target, num_classes)
            out.append(precision_recall_f1_support(matrix, average, gt_count=gt_count))
        return out


@METRICS.register_module()
class ConfusionMatrix(DeviceResults, BaseMetric):
    """MMPretrain's ``ConfusionMatrix``: ``confusion_matrix/result``, a ``(C, C)`` tensor of
    counts, rows the true class and columns the predicted one (the arg-max of the scores).

    ``num_classes`` is needed only when the samples carry labels without scores. The matrix
    is not a scalar: the log line and the curves leave it out, the test metrics JSON holds
    it as nested lists (``vistra confusion-matrix`` draws it).
    """

    default_prefix: str | None = "confusion_matrix"

    def __init__(
        self, num_classes: int | None = None, collect_device: str = "cpu", prefix: str | None = None
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = num_classes

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if "pred_score" in sample:
                score = sample["pred_score"]
                pred_label = score.argmax(dim=0, keepdim=True)
                self.num_classes = score.size(0)
            else:
                pred_label = _require(sample, "pred_label", "ConfusionMatrix")
            gt_label = _require(sample, "gt_label", "ConfusionMatrix")
            self.results.append({"pred_label": pred_label, "gt_label": gt_label})
        self.settle_results()

    def compute_metrics(self, results: list) -> dict[str, torch.Tensor]:
        target = _collect_targets(results, "ConfusionMatrix")
        pred = torch.cat([r["pred_label"].reshape(-1) for r in results])
        return {"result": self.calculate(pred, target, self.num_classes)}

    @staticmethod
    def calculate(
        pred: torch.Tensor | np.ndarray | Sequence,
        target: torch.Tensor | np.ndarray | Sequence,
        num_classes: int | None = None,
    ) -> torch.Tensor:
        """Counts from labels ``(N,)`` (``num_classes`` required) or scores ``(N, C)``."""
        pred = to_tensor(pred)
        target = to_tensor(target).to(torch.int64).reshape(-1)
        if pred.size(0) != target.size(0):
            raise ValueError(
                f"The size of pred ({pred.size(0)}) doesn't match the target ({target.size(0)})."
            )
        if pred.ndim == 1:
            if num_classes is None:
                raise ValueError("ConfusionMatrix needs num_classes when pred holds labels")
            labels = pred
        else:
            num_classes = num_classes or pred.size(1)
            labels = pred.argmax(dim=1)
        return confusion_matrix(labels, target, num_classes)
