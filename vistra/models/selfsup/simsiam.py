"""SimSiam: a siamese network trained with a predictor and a stop-gradient, no negatives.

Chen & He, "Exploring Simple Siamese Representation Learning" (2021). Both views go
through one backbone -> ``NonLinearNeck`` projector; the ``LatentPredictHead``'s predictor
maps each projection onto the (detached) projection of the other view, and the loss is
``0.5 * (cos-loss(z1 -> z2) + cos-loss(z2 -> z1))``. The paper keeps the predictor's learning
rate fixed while the rest follows the schedule: ``SimSiamHook``
(vistra/engine/hooks/simsiam_hook.py) resets the lr of the parameter groups that the
config marks ``fix_lr=True`` (``paramwise_cfg.custom_keys={'predictor': dict(fix_lr=True)}``).

Key layout (both packages): ``backbone.*``, ``neck.*``, ``head.predictor.*``. The two
packages' ``SimSiam`` take the same arguments; MMSelfSup calls the head directly, MMPretrain
through ``head.loss``, which compute the same.
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
class SimSiam(BaseSelfSupervisor):
    """SimSiam: ``backbone`` -> ``neck`` (projector) -> ``head`` (predictor and loss)."""

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        """Backbone features of a batch, or of the first view when given a list of views."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(
        self, inputs: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
    ) -> dict[str, torch.Tensor]:
        """The symmetric, stop-gradient prediction loss of the two views."""
        img_v1, img_v2 = two_views(type(self).__name__, inputs)
        z1 = self.neck(self.backbone(img_v1))[0]
        z2 = self.neck(self.backbone(img_v2))[0]
        return dict(loss=0.5 * (self.head.loss(z1, z2) + self.head.loss(z2, z1)))
