"""``DiceLoss`` with MMSegmentation 1.x's arguments and formula."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.losses.utils import check_reduction, weight_reduce_loss
from vistra.registry import MODELS


def expand_onehot_labels_dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Label map ``(N, H, W)`` -> one-hot ``(N, C, H, W)``; labels >= C (e.g. 255) -> all zero."""
    num_classes = pred.shape[1]
    clamped = torch.clamp(target.long(), min=0, max=num_classes)
    return F.one_hot(clamped, num_classes + 1)[..., :num_classes].movedim(-1, 1)


def dice_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    eps: float = 1e-3,
    reduction: str = "mean",
    naive_dice: bool = False,
    avg_factor: float | None = None,
    ignore_index: int | None = 255,
) -> torch.Tensor:
    """Per-sample ``1 - dice`` over all classes and pixels, then reduced over the batch.

    V-Net form (default): ``2*sum(p*t) / (sum(p^2) + eps + sum(t^2) + eps)``; naive form:
    ``(2*sum(p*t) + eps) / (sum(p) + sum(t) + eps)``. ``ignore_index`` drops that *class
    channel* when it is one (MMSegmentation's rule); ignored pixels are already all-zero
    in the one-hot target.
    """
    if ignore_index is not None:
        keep = torch.arange(pred.shape[1], device=pred.device) != ignore_index
        pred, target = pred[:, keep], target[:, keep]
        if pred.shape[1] == 0:
            raise ValueError(f"DiceLoss ignore_index={ignore_index} removes the only class")
    inputs = pred.flatten(1)
    target = target.flatten(1).float()
    inter = torch.sum(inputs * target, 1)
    if naive_dice:
        dice = (2 * inter + eps) / (inputs.sum(1) + target.sum(1) + eps)
    else:
        dice = 2 * inter / ((inputs * inputs).sum(1) + eps + (target * target).sum(1) + eps)
    loss = 1 - dice
    if weight is not None and (weight.dim() != loss.dim() or len(weight) != len(pred)):
        raise ValueError(
            f"DiceLoss weight must have one value per sample ({len(pred)}), got {tuple(weight.shape)}"
        )
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class DiceLoss(nn.Module):
    """Dice loss (`V-Net <https://arxiv.org/abs/1606.04797>`_), MMSegmentation 1.x.

    ``activate`` applies sigmoid (``use_sigmoid``) or softmax to the logits first; targets
    may be a label map or already one-hot.
    """

    def __init__(
        self,
        use_sigmoid: bool = True,
        activate: bool = True,
        reduction: str = "mean",
        naive_dice: bool = False,
        loss_weight: float = 1.0,
        ignore_index: int | None = 255,
        eps: float = 1e-3,
        loss_name: str = "loss_dice",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.use_sigmoid, self.activate, self.reduction = use_sigmoid, activate, reduction
        self.naive_dice, self.loss_weight, self.ignore_index = naive_dice, loss_weight, ignore_index
        self.eps, self._loss_name = eps, loss_name

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
        ignore_index: int | None = 255,
    ) -> torch.Tensor:
        """``ignore_index`` is accepted for the decode-head call and unused: the
        constructor's value applies, as in MMSegmentation."""
        check_reduction(reduction_override, "reduction_override")
        one_hot = target if pred.shape == target.shape else expand_onehot_labels_dice(pred, target)
        reduction = reduction_override or self.reduction
        if self.activate:
            if self.use_sigmoid:
                pred = pred.sigmoid()
            elif pred.shape[1] != 1:  # softmax of one channel is constant
                pred = pred.softmax(dim=1)
        loss = dice_loss(
            pred, one_hot, weight, eps=self.eps, reduction=reduction, naive_dice=self.naive_dice,
            avg_factor=avg_factor, ignore_index=self.ignore_index,
        )  # fmt: skip
        return self.loss_weight * loss
