"""``BoundaryLoss``: class-balanced binary cross entropy on boundary logits, as
MMSegmentation 1.x defines it for PIDNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistra.registry import MODELS


@MODELS.register_module()
class BoundaryLoss(nn.Module):
    """BCE with logits of boundary predictions ``(N, 1, H, W)`` against a 0/1 edge map
    ``(N, H, W)``, every edge pixel weighted by the fraction of non-edge pixels and vice
    versa (pixels of any other value weigh 0); averaged over all pixels of the batch."""

    def __init__(self, loss_weight: float = 1.0, loss_name: str = "loss_boundary") -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.loss_name_ = loss_name

    @property
    def loss_name(self) -> str:
        return self.loss_name_

    def forward(self, bd_pre: torch.Tensor, bd_gt: torch.Tensor) -> torch.Tensor:
        logits = bd_pre.permute(0, 2, 3, 1).reshape(1, -1)
        target = bd_gt.reshape(1, -1).float()
        pos, neg = target == 1, target == 0
        num_pos, num_neg = pos.sum(), neg.sum()
        total = num_pos + num_neg
        weight = torch.zeros_like(logits)
        weight[pos] = (num_neg / total).to(weight.dtype)
        weight[neg] = (num_pos / total).to(weight.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, target, weight, reduction="mean")
        return self.loss_weight * loss
