"""EVA's MAE-style pre-training (Fang et al., 2022, `EVA: Exploring the Limits of Masked
Visual Representation Learning at Scale <https://arxiv.org/abs/2211.07636>`_), as
MMPretrain's and MMSelfSup 1.x's ``EVA`` (the ``eva-mae-style_*`` configs).

MAE's encoder and decoder (vistra/models/selfsup/mae.py) regress, instead of pixels, the
features a frozen CLIP image encoder (``CLIPGenerator``) gives each patch: the decoder
predicts ``predict_feature_dim`` values per patch and the loss (``CosineSimilarityLoss``,
through ``MIMHead``) is taken over the masked patches. Keys: MAE's (``backbone.*``,
``neck.*``) and the CLIP model's under ``target_generator.tokenizer.*``. This module also
holds ``MIMHead``, MMPretrain's generic head that applies a loss to predictions and
targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.models.selfsup import clip_vit  # noqa: F401 (registers CLIPGenerator)
from vistra.models.selfsup.mae import MAE, _one_view
from vistra.registry import MODELS

__all__ = ["EVA", "MIMHead"]


@MODELS.register_module()
class MIMHead(BaseModule):
    """Masked-image-modelling head: ``loss(pred, target, mask)`` applies the ``loss``
    module (a config or module) to ``(B, L, C)`` predictions and targets, ``mask``
    ``(B, L)`` (1 = a masked patch) when the loss weighs patches."""

    def __init__(self, loss: dict | nn.Module) -> None:
        super().__init__()
        self.loss_module = (
            loss if isinstance(loss, nn.Module) else MODELS.build(loss, key_path="model.head.loss")
        )

    def loss(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.loss_module(pred, target, mask)

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.loss(pred, target, mask)


@MODELS.register_module()
class EVA(MAE):
    """EVA: ``backbone`` (``MAEViT``), ``neck`` (``MAEPretrainDecoder`` with
    ``predict_feature_dim`` the CLIP feature width), ``head`` (``MIMHead`` or MMSelfSup's
    ``MILANPretrainHead``) and ``target_generator`` (``CLIPGenerator``).

    The CLIP encoder sees the same (normalised) image as the encoder; the class token's
    feature is dropped from the target. ``mode='loss'`` gives ``{'loss': ...}``.
    """

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        noise: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """``noise`` ``(B, L)`` fixes the mask instead of drawing it."""
        if self.target_generator is None:
            raise ValueError("EVA needs a target_generator (type='CLIPGenerator')")
        inputs = _one_view(inputs)
        # CLIP runs first, as upstream: it draws no random numbers, so the mask's draw is
        # the first one after the seed on both sides
        clip_feature, _ = self.target_generator(inputs)
        latent, mask, ids_restore = self.backbone(inputs, noise=noise)
        pred = self.neck(latent, ids_restore)
        return {"loss": self.head.loss(pred, clip_feature[:, 1:], mask)}

    def reconstruct(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("EVA predicts CLIP features, not pixels: nothing to show")
