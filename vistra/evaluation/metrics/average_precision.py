"""``AveragePrecision`` (mAP) of multi-label classification, and the VOC variants
``VOCAveragePrecision`` / ``VOCMultiLabelMetric`` that read the ``gt_label_difficult``
field of Pascal VOC samples. Same arguments, key names and numbers as MMPretrain 1.x.

AP of one class: rank the samples by score (highest first), drop those whose target is
-1 ("difficult"), and sum the precision at each positive's rank divided by the number of
positives -- ``sum_n (R_n - R_{n-1}) P_n``, no interpolation. ``mAP`` is the mean over
classes, in percent; ``average=None`` gives ``AP_classwise``.

VOC samples carry their non-difficult classes as ``gt_label`` and the difficult ones as
``gt_label_difficult``; ``difficult_as_positive`` maps the difficult ones to 1 (True),
0 (False) or -1, "ignored" (None, the default), before the metric sees the targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vistra.evaluation.functional import label_to_onehot
from vistra.evaluation.metric import BaseMetric
from vistra.evaluation.metrics.multi_label import MultiLabelMetric
from vistra.registry import METRICS

AP_AVERAGES = ("macro", None)


def average_precision(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-class AP in [0, 1] of ``pred`` scores (N, C) against 0/1/-1 ``target`` (N, C);
    a class without positives has AP 0."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    # One class at a time, in float32, summing a 1-D tensor: the same additions in the same
    # order as MMPretrain, so the values equal its to the last bit (a vectorised sum over
    # dim 0 rounds differently in the 7th digit).
    per_class = []
    for k in range(pred.size(1)):
        ranked = target[pred[:, k].argsort(descending=True), k]
        ranked = ranked[ranked != -1]  # difficult samples take no rank
        true_positives = (ranked == 1).cumsum(0)
        num_positive = int(true_positives[-1]) if len(ranked) else 0
        precision = true_positives / torch.arange(1, len(ranked) + 1)
        per_class.append((precision * (ranked == 1)).sum() / max(num_positive, 1))
    return torch.stack(per_class)


@METRICS.register_module()
class AveragePrecision(BaseMetric):
    """Average precision per class; ``mAP`` (percent) or ``AP_classwise``."""

    default_prefix = "multi-label"

    def __init__(
        self,
        average: str | None = "macro",
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if average not in AP_AVERAGES:
            raise ValueError(
                f"AveragePrecision(average=...) must be 'macro' or None, got {average!r}"
            )
        self.average = average

    def _target(self, sample: dict, num_classes: int) -> torch.Tensor:
        if "gt_score" in sample:
            return sample["gt_score"].detach().cpu().clone()
        if "gt_label" in sample:
            return label_to_onehot(sample["gt_label"].cpu(), num_classes)
        raise KeyError(f"{type(self).__name__} needs 'gt_score' or 'gt_label' in every sample")

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if "pred_score" not in sample:
                raise KeyError(f"{type(self).__name__} needs 'pred_score' in every data sample")
            score = sample["pred_score"].detach().cpu().clone()
            self.results.append(
                {"pred_score": score, "gt_score": self._target(sample, score.size(-1))}
            )

    def compute_metrics(self, results: list) -> dict[str, Any]:
        if not results:
            raise ValueError(f"{type(self).__name__} got no results to evaluate")
        pred = torch.stack([r["pred_score"] for r in results]).float()
        target = torch.stack([r["gt_score"] for r in results]).long()
        ap = average_precision(pred, target)
        if self.average is None:
            return {"AP_classwise": (ap * 100).tolist()}
        return {"mAP": (ap.mean() * 100).item()}  # percent after the mean, as MMPretrain


def _with_difficult(target: torch.Tensor, sample: dict, as_positive: bool | None) -> torch.Tensor:
    difficult = sample.get("gt_label_difficult")
    if difficult is None or len(difficult) == 0:
        return target
    index = torch.as_tensor(difficult, dtype=torch.long).reshape(-1)
    value = -1 if as_positive is None else int(as_positive)
    target = target.clone()
    target[index] = value
    return target


@METRICS.register_module()
class VOCAveragePrecision(AveragePrecision):
    """:class:`AveragePrecision` on VOC samples (``gt_label_difficult`` honoured)."""

    def __init__(
        self,
        average: str | None = "macro",
        collect_device: str = "cpu",
        prefix: str | None = None,
        difficult_as_positive: bool | None = None,
    ) -> None:
        super().__init__(average=average, collect_device=collect_device, prefix=prefix)
        self.difficult_as_positive = difficult_as_positive

    def _target(self, sample: dict, num_classes: int) -> torch.Tensor:
        target = label_to_onehot(sample["gt_label"].cpu(), num_classes)
        return _with_difficult(target, sample, self.difficult_as_positive)


@METRICS.register_module()
class VOCMultiLabelMetric(MultiLabelMetric):
    """:class:`MultiLabelMetric` on VOC samples (``gt_label_difficult`` honoured); other
    arguments as MultiLabelMetric's."""

    def __init__(
        self, *args: Any, difficult_as_positive: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.difficult_as_positive = difficult_as_positive

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if "pred_score" not in sample or "gt_label" not in sample:
                raise KeyError(
                    "VOCMultiLabelMetric needs 'pred_score' and 'gt_label' in every sample"
                )
            score = sample["pred_score"].detach().cpu().clone()
            target = label_to_onehot(sample["gt_label"].cpu(), score.size(-1))
            target = _with_difficult(target, sample, self.difficult_as_positive)
            self.results.append({"pred_score": score, "gt_score": target})
