"""BYOL: an online network predicts a slowly moving target network's projection.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning"
(2020). Both views go through the online backbone -> ``NonLinearNeck`` projector; the
``LatentPredictHead``'s predictor maps each online projection onto the *target*
projection of the other view, and the loss is ``2 * (cos-loss(v1 -> v2) + cos-loss(v2 -> v1))``
(``CosineSimilarityLoss``, i.e. ``2 - 2 cos`` per pair, averaged). The target network
(``target_net``) is a :class:`~vistra.models.selfsup.momentum.CosineEMA` of backbone and
neck, updated once per forward before the targets are computed, as upstream does; its
momentum follows a cosine over the run (the Runner gives it ``max_iters``).

Key layout (both packages): ``backbone.*``, ``neck.*``, ``head.predictor.*``,
``target_net.steps``, ``target_net.module.0.*`` (backbone copy), ``target_net.module.1.*``
(neck copy). MMPretrain's ``base_momentum`` is the online network's weight per update
(default 0.004, annealed to 0); MMSelfSup 1.x's is the target's (default 0.996, annealed to
1): the scoped ``mmselfsup`` variant converts, so both give the same averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.selfsup import latent_heads, nonlinear_neck, similarity_losses  # noqa: F401
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.moco import online_momentum, two_views
from vistra.models.selfsup.momentum import CosineEMA
from vistra.registry import MODELS


@MODELS.register_module()
class BYOL(BaseSelfSupervisor):
    """BYOL with MMPretrain's arguments (``base_momentum``: the online weight, 0.004)."""

    # MMSelfSup's variant reads ``base_momentum`` as the target's weight
    _target_momentum = False

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        base_momentum: float = 0.004,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        weight = online_momentum(
            type(self).__name__, "base_momentum", base_momentum, self._target_momentum
        )
        # both conventions anneal towards "the target stops moving": an online weight of 0
        self.target_net = CosineEMA(
            nn.Sequential(self.backbone, self.neck), momentum=weight, end_momentum=0.0
        )

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        """Backbone features of a batch, or of the first view when given a list of views."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def _head_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.head.loss(pred, target)

    def loss(
        self, inputs: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
    ) -> dict[str, torch.Tensor]:
        """The symmetric prediction loss of the two views."""
        img_v1, img_v2 = two_views(type(self).__name__, inputs)
        online_v1 = self.neck(self.backbone(img_v1))[0]
        online_v2 = self.neck(self.backbone(img_v2))[0]
        with torch.no_grad():
            self.target_net.update_parameters(nn.Sequential(self.backbone, self.neck))
            target_v1 = self.target_net(img_v1)[0]
            target_v2 = self.target_net(img_v2)[0]
        loss_1 = self._head_loss(online_v1, target_v2)
        loss_2 = self._head_loss(online_v2, target_v1)
        return dict(loss=2.0 * (loss_1 + loss_2))


@MODELS.register_module(name="BYOL", scope="mmselfsup")
class SelfSupBYOL(BYOL):
    """BYOL with MMSelfSup 1.x's arguments: ``base_momentum`` is the target network's
    weight per update (default 0.996, annealed to 1); the head is called directly."""

    _target_momentum = True

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        base_momentum: float = 0.996,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(backbone, neck, head, base_momentum, pretrained, data_preprocessor,
                         init_cfg)  # fmt: skip

    def _head_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.head(pred, target)
