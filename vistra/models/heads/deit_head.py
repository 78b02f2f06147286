"""Classification head of the distilled DeiT (MMPretrain's ``DeiTClsHead``).

Keys: ``layers.head`` (on the class token), ``layers.head_dist`` (on the distillation
token) and, with ``hidden_dim``, the shared ``layers.pre_logits``. The logits are the mean
of the two classifiers, as at DeiT's inference.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from vistra.models.heads.vit_head import ZERO_LINEAR_INIT, VisionTransformerClsHead
from vistra.registry import MODELS


@MODELS.register_module()
class DeiTClsHead(VisionTransformerClsHead):
    """Two linear classifiers, on the class and the distillation token, averaged.

    The last backbone output is the ``(cls_token, dist_token)`` pair of
    ``DistilledVisionTransformer`` (or an MMPretrain 0.x triple with the patch tokens
    first). Training it only fits both classifiers to the labels: the distillation from a
    teacher is not part of it (MMPretrain's is evaluation-only too, and warns the same).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        hidden_dim: int | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = ZERO_LINEAR_INIT,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            hidden_dim=hidden_dim,
            act_cfg=act_cfg,
            init_cfg=init_cfg,
            **kwargs,
        )
        width = in_channels if hidden_dim is None else hidden_dim
        self.layers.add_module("head_dist", nn.Linear(width, num_classes))

    def pre_logits(  # type: ignore[override]
        self, feats: tuple[Any, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The class and distillation tokens of the last stage, through the hidden layer
        if there is one."""
        feat = feats[-1]
        if not isinstance(feat, (tuple, list)) or len(feat) not in (2, 3):
            raise TypeError(
                "DeiTClsHead needs the (cls_token, dist_token) pair of a "
                "DistilledVisionTransformer with out_type='cls_token' as its input, got "
                f"{type(feat).__name__}"
            )
        cls_token, dist_token = feat[-2:]
        if self.hidden_dim is None:
            return cls_token, dist_token
        hidden = self.layers.pre_logits
        return self.layers.act(hidden(cls_token)), self.layers.act(hidden(dist_token))

    def forward(self, feats: tuple[Any, ...]) -> torch.Tensor:  # type: ignore[override]
        if self.training:
            warnings.warn(
                "DeiTClsHead: training the distilled DeiT without its teacher only fits both "
                "classifiers to the labels (MMPretrain cannot train it either)",
                stacklevel=2,
            )
        cls_token, dist_token = self.pre_logits(feats)
        return (self.layers.head(cls_token) + self.layers.head_dist(dist_token)) / 2
