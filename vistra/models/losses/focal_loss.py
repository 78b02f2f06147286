"""Sigmoid ``FocalLoss`` with MMSegmentation 1.x's arguments and formula."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.losses.utils import check_reduction, weight_reduce_loss
from vistra.registry import MODELS


def sigmoid_focal_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    gamma: float = 2.0,
    alpha: float | Sequence[float] = 0.5,
    class_weight: Sequence[float] | None = None,
    valid_mask: torch.Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | None = None,
) -> torch.Tensor:
    """Focal loss (`paper <https://arxiv.org/abs/1708.02002>`_) on ``(N, C)`` logits and
    one-hot ``(N, C)`` targets: ``BCE * (alpha*t + (1-alpha)*(1-t)) * (1 - p_t)^gamma``.

    ``alpha`` may be one value per class; ``weight`` is per sample or per element;
    ``valid_mask`` ``(N, 1)`` zeroes ignored samples (they still count in the mean).
    """
    alpha_t = pred.new_tensor(alpha) if isinstance(alpha, (list, tuple)) else alpha
    prob = pred.sigmoid()
    target = target.type_as(pred)
    one_minus_pt = (1 - prob) * target + prob * (1 - target)
    focal_weight = (alpha_t * target + (1 - alpha_t) * (1 - target)) * one_minus_pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    final_weight = torch.ones(1, pred.size(1), dtype=loss.dtype, device=loss.device)
    if weight is not None:
        if weight.shape != loss.shape and weight.size(0) == loss.size(0):
            weight = weight.view(-1, 1)
        if weight.dim() != loss.dim():
            raise ValueError(
                f"focal loss weight shape {tuple(weight.shape)} does not fit {tuple(loss.shape)}"
            )
        final_weight = final_weight * weight
    if class_weight is not None:
        final_weight = final_weight * pred.new_tensor(class_weight)
    if valid_mask is not None:
        final_weight = final_weight * valid_mask
    return weight_reduce_loss(loss, final_weight, reduction, avg_factor)


def _channels_last_2d(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, d1, ...)`` -> ``(B*d1*..., C)``."""
    return x.transpose(0, 1).reshape(x.size(1), -1).transpose(0, 1).contiguous()


@MODELS.register_module()
class FocalLoss(nn.Module):
    """Sigmoid focal loss for ``(N, C)`` or dense ``(N, C, H, W)`` logits.

    Labels may be class indices (pixels equal to ``ignore_index`` are masked out) or
    one-hot maps shaped like the logits. ``alpha`` is the foreground/background balance
    (per class when a list), not a class weight -- use ``class_weight`` for that.
    """

    def __init__(
        self,
        use_sigmoid: bool = True,
        gamma: float = 2.0,
        alpha: float | list[float] = 0.5,
        reduction: str = "mean",
        class_weight: list[float] | None = None,
        loss_weight: float = 1.0,
        loss_name: str = "loss_focal",
    ) -> None:
        super().__init__()
        if use_sigmoid is not True:
            raise ValueError("FocalLoss supports only use_sigmoid=True (as MMSegmentation)")
        check_reduction(reduction)
        if not isinstance(alpha, (float, list, tuple)):
            raise TypeError(f"FocalLoss alpha must be a float or a list of floats, got {alpha!r}")
        if class_weight is not None and not isinstance(class_weight, (list, tuple)):
            raise TypeError(f"FocalLoss class_weight must be None or a list, got {class_weight!r}")
        self.use_sigmoid, self.gamma, self.alpha = use_sigmoid, float(gamma), alpha
        self.reduction, self.class_weight = reduction, class_weight
        self.loss_weight, self._loss_name = float(loss_weight), loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
        ignore_index: int = 255,
    ) -> torch.Tensor:
        check_reduction(reduction_override, "reduction_override")
        same = pred.shape == target.shape
        if not same and not (pred.size(0) == target.size(0) and pred.shape[2:] == target.shape[1:]):
            raise ValueError(
                f"FocalLoss target {tuple(target.shape)} does not fit pred {tuple(pred.shape)}"
            )
        original_shape = pred.shape
        pred = _channels_last_2d(pred)
        if same:
            target = _channels_last_2d(target)
            valid_mask = (target.argmax(dim=1) != ignore_index).view(-1, 1)
        else:
            target = target.reshape(-1).long()
            valid_mask = (target != ignore_index).view(-1, 1)
            target = F.one_hot(
                torch.where(valid_mask.view(-1), target, 0), num_classes=pred.size(1)
            )
        reduction = reduction_override or self.reduction
        loss = self.loss_weight * sigmoid_focal_loss(
            pred, target, weight, gamma=self.gamma, alpha=self.alpha, class_weight=self.class_weight,
            valid_mask=valid_mask, reduction=reduction, avg_factor=avg_factor,
        )  # fmt: skip
        if reduction == "none":  # back to (B, C, d1, ...)
            c, b = original_shape[1], original_shape[0]
            loss = (
                loss.transpose(0, 1).reshape(c, b, *original_shape[2:]).transpose(0, 1).contiguous()
            )
        return loss
