"""Batch-normalising neck for linear probes (MMPretrain's ``ClsBatchNormNeck``).

MAE's linear probe normalises the frozen class token across the batch, without an affine
transform, before the linear classifier: the features of a masked-image-modelling encoder
have very different scales per channel, and plain SGD/LARS on them trains badly.
Keys: ``bn.running_mean``, ``bn.running_var``, ``bn.num_batches_tracked`` (plus
``bn.weight`` / ``bn.bias`` with ``affine=True``).
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.registry import MODELS


@MODELS.register_module()
class ClsBatchNormNeck(BaseModule):
    """``BatchNorm1d(input_features, affine, eps)`` applied to every stage's feature.

    Takes the backbone's tuple of ``(N, input_features)`` features (a ViT with
    ``out_type='cls_token'``) and returns a tuple of the same length. A stage given as a
    list (MMPretrain 0.x ``[patch_tokens, cls_token]``) uses its last entry.
    """

    def __init__(
        self,
        input_features: int,
        affine: bool = False,
        eps: float = 1e-6,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.bn = nn.BatchNorm1d(input_features, affine=affine, eps=eps)

    def forward(
        self, inputs: tuple[torch.Tensor | list[torch.Tensor], ...] | torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        if isinstance(inputs, torch.Tensor):
            inputs = (inputs,)
        outs = []
        for feat in inputs:
            feat = feat[-1] if isinstance(feat, list) else feat
            if feat.ndim != 2:
                raise ValueError(
                    "ClsBatchNormNeck normalises (N, C) features such as a ViT class token "
                    f"(out_type='cls_token'); got a feature of shape {tuple(feat.shape)}"
                )
            outs.append(self.bn(feat))
        return tuple(outs)
