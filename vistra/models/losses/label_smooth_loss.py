"""``LabelSmoothLoss`` (MMPretrain): cross entropy against smoothed one-hot targets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.losses.cross_entropy_loss import CrossEntropyLoss
from vistra.models.losses.utils import check_reduction, convert_to_one_hot
from vistra.registry import MODELS

_MODES = ("original", "classy_vision", "multi_label")


def smooth_labels(one_hot: torch.Tensor, eps: float, mode: str) -> torch.Tensor:
    """Smoothed targets from one-hot(-like) labels.

    ``'original'``/``'classy_vision'``: ``y * (1 - eps) + eps / C`` (classy_vision passes
    ``eps = val / (1 + val)``); ``'multi_label'``: positives ``1 - eps``, negatives ``eps``.
    """
    if mode == "multi_label":
        smooth = torch.full_like(one_hot, eps)
        return smooth.masked_fill(one_hot > 0, 1 - eps)
    return one_hot * (1 - eps) + eps / one_hot.size(1)


@MODELS.register_module()
class LabelSmoothLoss(nn.Module):
    """Label-smoothing cross entropy with MMPretrain's modes.

    ``use_sigmoid`` defaults to True for ``'multi_label'`` (BCE) and False otherwise (soft
    softmax cross entropy). ``num_classes`` is checked against the scores, or taken from
    them when None.
    """

    def __init__(
        self,
        label_smooth_val: float,
        num_classes: int | None = None,
        use_sigmoid: bool | None = None,
        mode: str = "original",
        reduction: str = "mean",
        loss_weight: float = 1.0,
        class_weight: Sequence[float] | None = None,
        pos_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(label_smooth_val, bool) or not isinstance(label_smooth_val, (int, float)):
            raise TypeError(f"label_smooth_val must be a float, got {label_smooth_val!r}")
        if not 0 <= label_smooth_val < 1:
            raise ValueError(f"label_smooth_val must be in [0, 1), got {label_smooth_val}")
        if mode not in _MODES:
            raise ValueError(f"LabelSmoothLoss mode must be one of {_MODES}, got {mode!r}")
        check_reduction(reduction)
        self.num_classes, self.mode = num_classes, mode
        self.label_smooth_val, self.reduction, self.loss_weight = (
            label_smooth_val,
            reduction,
            loss_weight,
        )
        self._eps = (
            label_smooth_val / (1 + label_smooth_val)
            if mode == "classy_vision"
            else label_smooth_val
        )
        if use_sigmoid is None:
            use_sigmoid = mode == "multi_label"
        self.ce = CrossEntropyLoss(
            use_sigmoid=use_sigmoid, use_soft=not use_sigmoid, reduction=reduction,
            class_weight=class_weight, pos_weight=pos_weight,
        )  # fmt: skip

    def generate_one_hot_like_label(self, label: torch.Tensor) -> torch.Tensor:
        """Class indices ``(N,)``/``(N, 1)`` -> one-hot floats; ``(N, C)`` labels pass as floats."""
        if label.dim() == 1 or (label.dim() == 2 and label.shape[1] == 1):
            label = convert_to_one_hot(label.view(-1, 1), self.num_classes)  # type: ignore[arg-type]
        return label.float()

    def forward(
        self,
        cls_score: torch.Tensor,
        label: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        if self.num_classes is None:
            self.num_classes = cls_score.shape[1]
        elif self.num_classes != cls_score.shape[1]:
            raise ValueError(
                f"LabelSmoothLoss num_classes={self.num_classes} but the scores have "
                f"{cls_score.shape[1]} classes"
            )
        one_hot = self.generate_one_hot_like_label(label)
        if one_hot.shape != cls_score.shape:
            raise ValueError(
                f"labels {tuple(label.shape)} do not fit scores {tuple(cls_score.shape)}"
            )
        target = smooth_labels(one_hot, self._eps, self.mode)
        loss = self.ce(
            cls_score,
            target,
            weight=weight,
            avg_factor=avg_factor,
            reduction_override=reduction_override,
        )
        return self.loss_weight * loss
