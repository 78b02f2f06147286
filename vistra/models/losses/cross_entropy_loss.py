"""``CrossEntropyLoss`` with MMPretrain's and MMSegmentation's arguments in one class.

Classification logits ``(N, C)`` follow MMPretrain: hard labels ``(N,)`` or soft/one-hot
labels ``(N, C)`` (Mixup, CutMix, label smoothing), ``class_weight`` scales each class's
term, ``pos_weight`` is BCE's positive weight, and ``'mean'`` divides by the number of
samples (``ClsHead`` passes ``avg_factor=N``).

Dense logits ``(N, C, H, W)`` with labels ``(N, H, W)`` follow MMSegmentation 1.x: pixels
equal to ``ignore_index`` (255 unless the caller passes another) contribute nothing; the
``'mean'`` divides by the number of pixels, ignored ones included, unless
``avg_non_ignore=True``; with ``class_weight`` it divides by the summed class weights of
the counted pixels instead, like PyTorch's weighted mean (ignored pixels count with weight
1 when ``avg_non_ignore`` is off -- MMSegmentation itself crashes there). With
``use_sigmoid`` the dense ``class_weight`` is BCE's per-class ``pos_weight``, as in
MMSegmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.losses.utils import check_reduction, get_class_weight, weight_reduce_loss
from vistra.registry import MODELS


def cross_entropy(
    pred: torch.Tensor,
    label: torch.Tensor,
    weight: torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | torch.Tensor | None = None,
    ignore_index: int = -100,
    avg_non_ignore: bool = False,
    weighted_mean: bool = True,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Softmax cross entropy on hard labels with MMSegmentation's averaging rules.

    ``weighted_mean=False`` gives MMPretrain's plain mean over labels when ``avg_factor``
    is None and ``avg_non_ignore`` is off.
    """
    label = label.long()  # uint8/int32 label maps are fine inputs
    loss = F.cross_entropy(
        pred, label, weight=class_weight, reduction="none",
        ignore_index=ignore_index, label_smoothing=label_smoothing,
    )  # fmt: skip
    if avg_factor is None and reduction == "mean" and (weighted_mean or avg_non_ignore):
        ignored = label == ignore_index
        if class_weight is None:
            avg_factor = label.numel() - int(ignored.sum()) if avg_non_ignore else label.numel()
        else:
            safe = torch.where(ignored, torch.zeros_like(label), label)
            label_weights = class_weight[safe]
            filler = 0.0 if avg_non_ignore else 1.0
            avg_factor = torch.where(ignored, label_weights.new_tensor(filler), label_weights).sum()
    if weight is not None:
        weight = weight.float()
    return weight_reduce_loss(loss, weight=weight, reduction=reduction, avg_factor=avg_factor)


def soft_cross_entropy(
    pred: torch.Tensor,
    label: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    class_weight: torch.Tensor | None = None,
    avg_factor: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross entropy against a distribution over classes (dim 1), e.g. Mixup targets."""
    loss = -label * F.log_softmax(pred, dim=1)
    if class_weight is not None:
        loss = loss * _per_class(class_weight, pred)
    loss = loss.sum(dim=1)
    if weight is not None:
        weight = weight.float()
    return weight_reduce_loss(loss, weight=weight, reduction=reduction, avg_factor=avg_factor)


def binary_cross_entropy(
    pred: torch.Tensor,
    label: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    avg_non_ignore: bool = False,
) -> torch.Tensor:
    """Sigmoid BCE; hard labels become one-hot, ignored or negative labels are masked out.

    ``class_weight`` scales each class's term; ``pos_weight`` weights positives per class.
    """
    if pred.dim() == label.dim() + 1 and pred.size(1) == 1:  # binary: (N, 1, ...) vs (N, ...)
        kept = label[label != ignore_index]
        if kept.numel() and kept.max() > 1:
            raise ValueError(
                "for a one-channel prediction the labels must be 0 or 1 (or ignore_index)"
            )
        pred = pred.squeeze(1)
    if pred.dim() != label.dim():
        if pred.dim() != label.dim() + 1 or pred.shape[2:] != label.shape[1:]:
            raise ValueError(
                f"BCE needs labels shaped like the scores or one dim less: scores {tuple(pred.shape)}, "
                f"labels {tuple(label.shape)}"
            )
        label, weight, valid = _expand_onehot(label, weight, pred.shape, ignore_index)
    else:
        valid = ((label >= 0) & (label != ignore_index)).float()
        if weight is not None and weight.dim() == 1 and pred.dim() > 1:
            weight = weight.reshape(-1, *([1] * (pred.dim() - 1)))  # sample-wise weight
        weight = valid if weight is None else weight.float() * valid
    if reduction == "mean" and avg_factor is None and avg_non_ignore:
        avg_factor = valid.sum().item()
    if pos_weight is not None and pred.dim() > 2:
        pos_weight = _per_class(pos_weight, pred)
    loss = F.binary_cross_entropy_with_logits(
        pred, label.float(), pos_weight=pos_weight, reduction="none"
    )
    if class_weight is not None:
        loss = loss * _per_class(class_weight, pred)
    return weight_reduce_loss(loss, weight, reduction=reduction, avg_factor=avg_factor)


def mask_cross_entropy(
    pred: torch.Tensor,
    target: torch.Tensor,
    label: torch.Tensor,
    reduction: str = "mean",
    avg_factor: float | None = None,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """BCE on each ROI's mask channel for its class ``label`` (MMSegmentation ``use_mask``)."""
    if reduction != "mean" or avg_factor is not None:
        raise ValueError("use_mask cross entropy supports only reduction='mean' without avg_factor")
    inds = torch.arange(pred.size(0), device=pred.device)
    pred_slice = pred[inds, label.long().reshape(-1)]
    return F.binary_cross_entropy_with_logits(
        pred_slice, target, weight=class_weight, reduction="mean"
    )[None]


def _per_class(values: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Shape per-class values to broadcast along dim 1 of ``pred``."""
    if pred.dim() <= 2:
        return values
    return values.reshape(-1, *([1] * (pred.dim() - 2)))


def _expand_onehot(
    labels: torch.Tensor, weight: torch.Tensor | None, shape: torch.Size, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index labels -> one-hot of ``shape``; the weight is zero on ignored positions."""
    valid = (labels >= 0) & (labels != ignore_index)
    if valid.any() and labels[valid].max() >= shape[1]:
        raise ValueError(
            f"labels must be < the number of classes {shape[1]} (or ignore_index {ignore_index})"
        )
    safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
    onehot = F.one_hot(safe, shape[1]).movedim(-1, 1) * valid.unsqueeze(1)
    valid_mask = valid.unsqueeze(1).expand(shape).float()
    bin_weight = (
        valid_mask if weight is None else weight.float().unsqueeze(1).expand(shape) * valid_mask
    )
    return onehot, bin_weight, valid_mask


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Cross entropy: softmax (hard or soft labels), sigmoid (``use_sigmoid``) or per-ROI
    mask BCE (``use_mask``). See the module docstring for the averaging rules.

    ``label_smoothing`` (vistra's addition; MMPretrain configs use ``LabelSmoothLoss``)
    smooths softmax targets as ``y * (1 - s) + s / C``.
    """

    def __init__(
        self,
        use_sigmoid: bool = False,
        use_soft: bool = False,
        use_mask: bool = False,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        class_weight: Sequence[float] | str | None = None,
        pos_weight: Sequence[float] | None = None,
        loss_name: str = "loss_ce",
        avg_non_ignore: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if sum((use_sigmoid, use_soft, use_mask)) > 1:
            raise ValueError(
                "CrossEntropyLoss: use_sigmoid, use_soft and use_mask exclude each other"
            )
        check_reduction(reduction)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if label_smoothing and (use_sigmoid or use_mask):
            raise ValueError("label_smoothing applies to softmax cross entropy only")
        self.use_sigmoid, self.use_soft, self.use_mask = use_sigmoid, use_soft, use_mask
        self.reduction, self.loss_weight = reduction, loss_weight
        self.class_weight = get_class_weight(class_weight)
        self.pos_weight = None if pos_weight is None else [float(v) for v in pos_weight]
        self.avg_non_ignore, self.label_smoothing = avg_non_ignore, label_smoothing
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """The key this loss is logged under; ``loss_`` prefixed names are back-propagated."""
        return self._loss_name

    def extra_repr(self) -> str:
        return f"avg_non_ignore={self.avg_non_ignore}"

    def forward(
        self,
        cls_score: torch.Tensor,
        label: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
        reduction_override: str | None = None,
        ignore_index: int | None = None,
    ) -> torch.Tensor:
        """``ignore_index`` defaults to 255 for dense logits and -100 (none) otherwise.

        With ``use_mask``, ``weight`` carries each ROI's class index (MMSegmentation's
        calling convention).
        """
        check_reduction(reduction_override, "reduction_override")
        reduction = reduction_override or self.reduction
        dense = cls_score.dim() > 2
        if ignore_index is None:
            ignore_index = 255 if dense and not self.use_mask else -100
        class_weight = (
            None if self.class_weight is None else cls_score.new_tensor(self.class_weight)
        )
        if self.use_mask:
            loss = mask_cross_entropy(cls_score, label, weight, reduction, avg_factor, class_weight)
        elif self.use_sigmoid:
            loss = self._sigmoid(
                cls_score, label, weight, reduction, avg_factor, class_weight, ignore_index
            )
        elif self.use_soft or (label.shape == cls_score.shape and label.is_floating_point()):
            loss = self._soft(cls_score, label, weight, reduction, avg_factor, class_weight)
        else:
            loss = cross_entropy(
                cls_score, label, weight, class_weight, reduction, avg_factor, ignore_index,
                self.avg_non_ignore, weighted_mean=dense, label_smoothing=self.label_smoothing,
            )  # fmt: skip
        return self.loss_weight * loss

    def _soft(self, cls_score, label, weight, reduction, avg_factor, class_weight) -> torch.Tensor:
        if label.shape != cls_score.shape:
            raise ValueError(
                f"use_soft needs labels shaped like the scores {tuple(cls_score.shape)}, "
                f"got {tuple(label.shape)}"
            )
        label = label.float()
        if self.label_smoothing:
            label = label * (1 - self.label_smoothing) + self.label_smoothing / cls_score.size(1)
        return soft_cross_entropy(cls_score, label, weight, reduction, class_weight, avg_factor)

    def _sigmoid(self, cls_score, label, weight, reduction, avg_factor, class_weight, ignore_index):
        pos_weight = None if self.pos_weight is None else cls_score.new_tensor(self.pos_weight)
        if cls_score.dim() > 2 and class_weight is not None:
            if pos_weight is not None:
                raise ValueError("dense BCE uses class_weight as pos_weight; give only one of them")
            pos_weight, class_weight = class_weight, None
        return binary_cross_entropy(
            cls_score, label, weight, reduction, avg_factor, class_weight, pos_weight,
            ignore_index, self.avg_non_ignore,
        )  # fmt: skip
