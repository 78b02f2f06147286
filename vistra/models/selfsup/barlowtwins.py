"""Barlow Twins: make the cross-correlation of two views' embeddings the identity.

Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction" (2021).
Both views go through one backbone -> ``NonLinearNeck`` projector (8192 wide in the
configs); ``LatentCrossCorrelationHead`` batch-normalises the two embeddings, forms their
``(C, C)`` cross-correlation over the global batch and ``CrossCorrelationLoss`` pulls its
diagonal to 1 and, weighted by ``lambd``, its off-diagonal entries to 0.

Key layout (both packages): ``backbone.*``, ``neck.*``, ``head.bn.*`` (the head's
affine-free ``BatchNorm1d``: running statistics only). The two packages' ``BarlowTwins``
take the same arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vistra.data.structures import DataSample
from vistra.models.selfsup import latent_heads, nonlinear_neck, similarity_losses  # noqa: F401
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.moco import two_views
from vistra.registry import MODELS


@MODELS.register_module()
class BarlowTwins(BaseSelfSupervisor):
    """Barlow Twins: ``backbone`` -> ``neck`` (projector) -> ``head`` (cross-correlation)."""

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        """Backbone features of a batch, or of the first view when given a list of views."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(
        self, inputs: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
    ) -> dict[str, torch.Tensor]:
        """The redundancy-reduction loss of the two views' embeddings."""
        img_v1, img_v2 = two_views(type(self).__name__, inputs)
        z1 = self.neck(self.backbone(img_v1))[0]
        z2 = self.neck(self.backbone(img_v2))[0]
        return dict(loss=self.head.loss(z1, z2))
