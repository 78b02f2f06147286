"""Heads of the siamese methods that compare two latent vectors.

- ``LatentPredictHead`` (BYOL, SimSiam): a predictor (any registered neck, in practice a
  ``NonLinearNeck``) maps the online projection, and the loss (``CosineSimilarityLoss``)
  compares the prediction with the detached target. Keys ``head.predictor.*``.
- ``LatentCrossCorrelationHead`` (Barlow Twins): both embeddings go through one
  ``BatchNorm1d(affine=False)`` and the loss sees their cross-correlation matrix, averaged
  over the global batch. Keys ``head.bn.running_mean``, ``head.bn.running_var``,
  ``head.bn.num_batches_tracked``.

MMPretrain calls ``head.loss(a, b)`` and takes ``init_cfg``; MMSelfSup 1.x calls the head
itself (``head(a, b)``) and has no ``init_cfg``: its variants are registered for scope
``mmselfsup``. Both spellings compute the same thing and keep the same keys.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from vistra.models.base import BaseModule
from vistra.registry import MODELS


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


@MODELS.register_module()
class LatentPredictHead(BaseModule):
    """``loss(predictor(input), target.detach())`` (MMPretrain's arguments)."""

    def __init__(
        self, loss: dict, predictor: dict, init_cfg: dict | list[dict] | None = None
    ) -> None:
        super().__init__(init_cfg)
        self.loss_module = MODELS.build(loss, key_path="model.head.loss")
        self.predictor = MODELS.build(predictor, key_path="model.head.predictor")

    def loss(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input``, ``target``: ``(N, C)`` projections of two views."""
        pred = self.predictor([input])[0]
        return self.loss_module(pred, target.detach())

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(input, target)


@MODELS.register_module(name="LatentPredictHead", scope="mmselfsup")
class SelfSupLatentPredictHead(LatentPredictHead):
    """MMSelfSup 1.x's ``LatentPredictHead``: no ``init_cfg``; called as ``head(a, b)``."""

    def __init__(self, loss: dict, predictor: dict) -> None:
        super().__init__(loss, predictor)


@MODELS.register_module()
class LatentCrossCorrelationHead(BaseModule):
    """Cross-correlation of the batch-normalised embeddings, then the loss (Barlow Twins).

    ``C = bn(input).T @ bn(target) / (N * world_size)``, summed over ranks, so every rank
    sees the matrix of the global batch.
    """

    def __init__(
        self, in_channels: int, loss: dict, init_cfg: dict | list[dict] | None = None
    ) -> None:
        super().__init__(init_cfg)
        self.bn = nn.BatchNorm1d(in_channels, affine=False)
        self.loss_module = MODELS.build(loss, key_path="model.head.loss")

    def loss(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input``, ``target``: ``(N, C)`` embeddings of the two views."""
        world_size = _world_size()
        matrix = self.bn(input).T @ self.bn(target)
        matrix = matrix / (input.size(0) * world_size)
        if world_size > 1:
            # as upstream: the sum carries no gradient from other ranks' halves; each rank
            # back-propagates through its own share and DDP averages the parameter grads
            with torch.no_grad():
                total = matrix.detach().clone()
                dist.all_reduce(total)
            matrix = matrix + (total - matrix.detach())
        return self.loss_module(matrix)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(input, target)


@MODELS.register_module(name="LatentCrossCorrelationHead", scope="mmselfsup")
class SelfSupLatentCrossCorrelationHead(LatentCrossCorrelationHead):
    """MMSelfSup 1.x's ``LatentCrossCorrelationHead``: no ``init_cfg``; called directly."""

    def __init__(self, in_channels: int, loss: dict) -> None:
        super().__init__(in_channels, loss)
