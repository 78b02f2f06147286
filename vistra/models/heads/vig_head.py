"""``VigClsHead`` (MMPretrain): the Vision GNN classifier, ``fc2(drop(act(bn(fc1(x)))))``.

Keys: ``fc1``, ``bn`` (a BatchNorm1d), ``fc2``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vistra.models.heads.cls_head import ClsHead
from vistra.models.layers.activation import build_activation_layer
from vistra.registry import MODELS


@MODELS.register_module()
class VigClsHead(ClsHead):
    """A hidden ``hidden_dim`` layer with BatchNorm, activation and dropout, then the
    classifier, on the last (pooled) feature; other keyword arguments (``loss``, ``topk``,
    ``cal_acc``, ``init_cfg``) go to :class:`ClsHead`."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        hidden_dim: int = 1024,
        act_cfg: dict | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes <= 0:
            raise ValueError(f"num_classes={num_classes} must be a positive integer")
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.in_channels, self.num_classes = in_channels, num_classes
        self.fc1 = nn.Linear(in_channels, hidden_dim)
        self.bn = nn.BatchNorm1d(hidden_dim)
        self.act = build_activation_layer(act_cfg)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, num_classes)

    def pre_logits(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The hidden layer's output for the last stage's feature."""
        return self.drop(self.act(self.bn(self.fc1(feats[-1]))))

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.fc2(self.pre_logits(feats))
