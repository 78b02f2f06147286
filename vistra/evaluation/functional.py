"""Metric maths as pure functions: counts from predictions, ratios from counts.

The metric classes only gather per-sample records and call these. Keeping the formulas
here, apart from the bookkeeping, lets tests check them on hand-made numbers and lets
users' own metrics reuse them. Formulas and edge cases follow MMPretrain 1.x
(classification: percentages, a zero denominator counts as 1) and MMSegmentation 1.x
(segmentation: per-class ratios, 0/0 gives NaN so that ``nanmean`` skips absent classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

AVERAGE_CHOICES = ("macro", "micro", None)
IOU_METRIC_CHOICES = ("mIoU", "mDice", "mFscore")


def to_tensor(value: torch.Tensor | np.ndarray | Sequence) -> torch.Tensor:
    """A tensor from a tensor, an array or a (nested) sequence of numbers."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return torch.tensor(value)
    raise TypeError(f"expected a tensor, an array or a sequence, got {type(value).__name__}")


# ----------------------------------------------------------------------------- classification
def label_accuracy(pred_label: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy in percent, shape ``(1,)``, from predicted labels ``(N,)``."""
    num = pred_label.size(0)
    correct = pred_label.eq(target).float().sum(0, keepdim=True)
    return correct.mul_(100.0 / num)


def topk_accuracy(
    pred_score: torch.Tensor,
    target: torch.Tensor,
    topk: Sequence[int] = (1,),
    thrs: Sequence[float | None] = (0.0,),
) -> list[list[torch.Tensor]]:
    """Accuracy in percent for every ``(k, thr)`` pair, indexed ``[k_index][thr_index]``.

    A sample counts for top-k when its label is among the k best scores and that score is
    strictly above ``thr`` (``None``: no threshold). Each entry has shape ``(1,)``.
    """
    pred_score = pred_score.float()
    num, num_classes = pred_score.shape
    maxk = max(topk)
    if maxk > num_classes:
        raise ValueError(
            f"Top-{maxk} accuracy is unavailable since the number of categories is {num_classes}."
        )
    scores, labels = pred_score.topk(maxk, dim=1)
    scores, labels = scores.t(), labels.t()  # (maxk, N): row i is the (i+1)-th best guess
    correct = labels.eq(target.view(1, -1).expand_as(labels))
    table = []
    for k in topk:
        row = []
        for thr in thrs:
            hit = correct if thr is None else correct & (scores > thr)
            row.append(hit[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / num))
        table.append(row)
    return table


def confusion_matrix(
    pred_label: torch.Tensor, target: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """``(C, C)`` counts, rows the true class and columns the predicted one.

    A negative predicted label means "no class" (a score under the threshold): the sample
    appears in no column, so it lowers recall but not precision.
    """
    pred_label = pred_label.reshape(-1).long()
    target = target.reshape(-1).long()
    _check_labels(target, num_classes, "target")
    _check_labels(pred_label[pred_label >= 0], num_classes, "predicted")
    kept = pred_label >= 0
    index = target[kept] * num_classes + pred_label[kept]
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_labels(labels: torch.Tensor, num_classes: int, what: str) -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{what} labels must lie in [0, {num_classes - 1}] for {num_classes} classes, "
            f"got values from {int(labels.min())} to {int(labels.max())}"
        )


def precision_recall_f1_support(
    matrix: torch.Tensor,
    average: str | None = "macro",
    gt_count: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and F1 in percent, and support, from a confusion matrix.

    ``gt_count`` is the number of samples of each class; it defaults to the row sums and
    must be given when some samples were predicted as no class. A class never predicted
    (or never present) gets precision (recall) 0, not NaN, as MMPretrain does.
    ``average``: ``'macro'`` means of per-class values, ``'micro'`` ratios of the summed
    counts, ``None`` the per-class values.
    """
    if average not in AVERAGE_CHOICES:
        raise ValueError(f"average must be one of {AVERAGE_CHOICES}, got {average!r}")
    tp = torch.diagonal(matrix)
    pred_sum = matrix.sum(0)
    gt_sum = matrix.sum(1) if gt_count is None else gt_count
    return _ratios(tp, pred_sum, gt_sum, average)


def multilabel_precision_recall_f1_support(
    pred_positive: torch.Tensor, gt_positive: torch.Tensor, average: str | None = "macro"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and F1 in percent, and support, of ``(N, C)`` 0/1 predictions.

    A target of -1 (a "difficult" sample, as in VOC) is left out of every count, for
    prediction and target alike. ``average`` as in :func:`precision_recall_f1_support`.
    """
    if average not in AVERAGE_CHOICES:
        raise ValueError(f"average must be one of {AVERAGE_CHOICES}, got {average!r}")
    ignored = gt_positive == -1
    pred_positive = pred_positive.long().masked_fill(ignored, 0)
    gt_positive = gt_positive.long().masked_fill(ignored, 0)
    tp = (pred_positive & gt_positive).sum(0)
    return _ratios(tp, pred_positive.sum(0), gt_positive.sum(0), average)


def _ratios(
    tp: torch.Tensor, pred_sum: torch.Tensor, gt_sum: torch.Tensor, average: str | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if average == "micro":
        tp, pred_sum, gt_sum = tp.sum(), pred_sum.sum(), gt_sum.sum()
    precision = tp / torch.clamp(pred_sum, min=1).float() * 100
    recall = tp / torch.clamp(gt_sum, min=1).float() * 100
    f1 = (
        2 * precision * recall / torch.clamp(precision + recall, min=torch.finfo(torch.float32).eps)
    )
    if average is None:
        return precision, recall, f1, gt_sum
    return precision.mean(0), recall.mean(0), f1.mean(0), gt_sum.sum(0)


def label_to_onehot(
    label: torch.Tensor | np.ndarray | Sequence | int, num_classes: int
) -> torch.Tensor:
    """Class indices to a ``(num_classes,)`` vector counting each index (1 for a label set)."""
    label = to_tensor([label] if isinstance(label, int) else label).reshape(-1).long()
    _check_labels(label, num_classes, "target")
    return torch.bincount(label, minlength=num_classes)


# ----------------------------------------------------------------------------- segmentation
def intersect_and_union(
    pred_label: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class pixel counts of one image: intersection, union, prediction, label.

    Pixels whose label is ``ignore_index`` are dropped first; values outside
    ``[0, num_classes)`` are counted in no class. Counts are exact ``int64`` on the CPU.
    """
    keep = label != ignore_index
    pred_label = pred_label[keep].long()
    label = label[keep].long()
    area_intersect = _histogram(pred_label[pred_label == label], num_classes)
    area_pred_label = _histogram(pred_label, num_classes)
    area_label = _histogram(label, num_classes)
    area_union = area_pred_label + area_label - area_intersect
    return area_intersect, area_union, area_pred_label, area_label


def _histogram(values: torch.Tensor, num_classes: int) -> torch.Tensor:
    values = values[(values >= 0) & (values < num_classes)]
    return torch.bincount(values, minlength=num_classes).cpu()


def f_score(precision, recall, beta: float = 1):
    """The F-beta score; ``beta`` weighs recall ``beta`` times as much as precision."""
    return (1 + beta**2) * (precision * recall) / ((beta**2 * precision) + recall)


def total_area_to_metrics(
    total_area_intersect: torch.Tensor | np.ndarray,
    total_area_union: torch.Tensor | np.ndarray,
    total_area_pred_label: torch.Tensor | np.ndarray,
    total_area_label: torch.Tensor | np.ndarray,
    metrics: Sequence[str] | str = ("mIoU",),
    nan_to_num: float | None = None,
    beta: float = 1,
) -> dict[str, np.ndarray]:
    """``aAcc`` and per-class ratios (fractions, not percent) from summed histograms.

    Keys in MMSegmentation's order: ``aAcc``, then per requested metric ``IoU``/``Acc``
    (mIoU), ``Dice``/``Acc`` (mDice), ``Fscore``/``Precision``/``Recall`` (mFscore).
    A class absent from both prediction and label gives 0/0 = NaN, which ``nan_to_num``
    replaces when set.

    The ratios are ``float32`` arrays computed in ``float32`` with the same operations
    as MMSegmentation (its histograms are ``torch.histc`` floats), so that a value that
    rounds at a tie (58.125 %) rounds as MMSegmentation's does.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in IOU_METRIC_CHOICES]
    if unknown:
        raise KeyError(
            f"metrics {unknown} are not supported; choose from {list(IOU_METRIC_CHOICES)}"
        )
    inter, union, pred, label = (
        _as_float32(a)
        for a in (total_area_intersect, total_area_union, total_area_pred_label, total_area_label)
    )
    out: dict[str, torch.Tensor] = {"aAcc": inter.sum() / label.sum()}
    for metric in metrics:
        if metric == "mIoU":
            out["IoU"] = inter / union
            out["Acc"] = inter / label
        elif metric == "mDice":
            out["Dice"] = 2 * inter / (pred + label)
            out["Acc"] = inter / label
        else:  # mFscore
            precision, recall = inter / pred, inter / label
            out["Fscore"] = f_score(precision, recall, beta)
            out["Precision"] = precision
            out["Recall"] = recall
    arrays = {k: v.numpy() for k, v in out.items()}
    if nan_to_num is not None:
        arrays = {k: np.nan_to_num(v, nan=nan_to_num) for k, v in arrays.items()}
    return arrays


def sum_areas(areas: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ``float32`` sum of per-image histograms, added one image after the other.

    MMSegmentation adds its ``float32`` histograms in dataset order; doing the same keeps
    every total (even past 2**24 pixels, where ``float32`` stops counting exactly) equal
    to its total.
    """
    total = areas[0].to(torch.float32)
    for area in areas[1:]:
        total = total + area.to(torch.float32)
    return total


def round_percent(value: np.ndarray) -> np.ndarray:
    """A fraction as a percentage rounded to 2 decimals, in the array's own precision.

    ``np.round(x * 100, 2)`` on ``float32``, as MMSegmentation rounds both its summary
    and its per-class table: a ``float32`` 0.58125 becomes 58.12, where ``float64``
    arithmetic gives 58.13.
    """
    return np.round(value * 100, 2)


def _as_float32(area: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(area, np.ndarray):
        area = torch.from_numpy(area)
    return torch.as_tensor(area).detach().cpu().to(torch.float32)
