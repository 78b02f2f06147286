"""Losses of the siamese methods: ``CosineSimilarityLoss`` (BYOL, SimSiam) and
``CrossCorrelationLoss`` (Barlow Twins).

Both packages (MMPretrain 1.2.0, MMSelfSup 1.0.0) register them with the same arguments
and formulas; neither has parameters or buffers, so they add no ``state_dict`` keys.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vistra.registry import MODELS


@MODELS.register_module()
class CosineSimilarityLoss(nn.Module):
    """``shift_factor - scale_factor * cos(pred, target)`` along the last dim, averaged.

    With a ``mask`` (one weight per row) the average is weighted by it instead.
    """

    def __init__(self, shift_factor: float = 0.0, scale_factor: float = 1.0) -> None:
        super().__init__()
        self.shift_factor = shift_factor
        self.scale_factor = scale_factor

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        cosine = (F.normalize(pred, dim=-1) * F.normalize(target, dim=-1)).sum(dim=-1)
        loss = self.shift_factor - self.scale_factor * cosine
        if mask is None:
            return loss.mean()
        return (loss * mask).sum() / mask.sum()


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened in row-major order."""
    n, m = x.shape
    if n != m:
        raise ValueError(f"off_diagonal needs a square matrix, got {tuple(x.shape)}")
    # dropping the last element and viewing as (n - 1, n + 1) puts every diagonal entry
    # in column 0
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


@MODELS.register_module()
class CrossCorrelationLoss(nn.Module):
    """Barlow Twins' redundancy reduction: ``sum((1 - C_ii)^2) + lambd * sum_{i!=j} C_ij^2``
    for the cross-correlation matrix ``C`` of the two views' normalised embeddings."""

    def __init__(self, lambd: float = 0.0051) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, cross_correlation_matrix: torch.Tensor) -> torch.Tensor:
        c = cross_correlation_matrix
        on_diag = (torch.diagonal(c) - 1).pow(2).sum()
        off_diag = off_diagonal(c).pow(2).sum()
        return on_diag + self.lambd * off_diag
