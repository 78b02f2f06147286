"""``OhemCrossEntropy``: cross entropy on the hardest pixels (online hard example mining),
as MMSegmentation 1.x defines it for PIDNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.losses.utils import get_class_weight
from vistra.registry import MODELS


@MODELS.register_module()
class OhemCrossEntropy(nn.Module):
    """Mean per-pixel cross entropy over the pixels whose predicted probability of their
    true class is below ``max(thres, p_k)``, where ``p_k`` is the ``min_kept``-th lowest
    such probability (so at least about ``min_kept`` pixels are kept). Pixels labelled
    ``ignore_label`` take no part. ``forward(score, target)`` takes logits ``(N, C, H, W)``
    and labels ``(N, H, W)``.
    """

    def __init__(
        self,
        ignore_label: int = 255,
        thres: float = 0.7,
        min_kept: int = 100000,
        loss_weight: float = 1.0,
        class_weight: Sequence[float] | str | None = None,
        loss_name: str = "loss_ohem",
    ) -> None:
        super().__init__()
        self.thresh = thres
        self.min_kept = max(1, min_kept)
        self.ignore_label = ignore_label
        self.loss_weight = loss_weight
        self.loss_name_ = loss_name
        self.class_weight = get_class_weight(class_weight)

    @property
    def loss_name(self) -> str:
        return self.loss_name_

    def forward(self, score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        weight = None if self.class_weight is None else score.new_tensor(self.class_weight)
        pixel_losses = F.cross_entropy(
            score, target, weight=weight, ignore_index=self.ignore_label, reduction="none"
        ).reshape(-1)
        valid = target.reshape(-1) != self.ignore_label
        # probability of each pixel's true class (ignored pixels read class 0, then drop)
        safe_target = target.masked_fill(target == self.ignore_label, 0)
        prob = F.softmax(score, dim=1).gather(1, safe_target.unsqueeze(1)).reshape(-1)
        prob, order = prob[valid].sort()
        if prob.numel() == 0:
            return score.new_tensor(0.0)
        threshold = max(prob[min(self.min_kept, prob.numel() - 1)], self.thresh)
        kept = pixel_losses[valid][order][prob < threshold]
        return self.loss_weight * kept.mean()
