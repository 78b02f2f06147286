"""``StackedLinearClsHead`` (MMPretrain): hidden fully connected layers, then a classifier.

Keys: ``layers.{i}.fc`` (and ``layers.{i}.norm`` with ``norm_cfg``) for each of the
``mid_channels`` hidden layers, and ``layers.{len(mid_channels)}.fc`` for the classifier
(also reachable as ``head.fc``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.heads.cls_head import ClsHead
from vistra.models.layers.activation import build_activation_layer
from vistra.models.layers.norm import build_norm_layer
from vistra.registry import MODELS


class LinearBlock(BaseModule):
    """``fc`` then the optional norm, activation and dropout."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dropout_rate: float = 0.0,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.fc = nn.Linear(in_channels, out_channels)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1] if norm_cfg is not None else None
        self.act = build_activation_layer(act_cfg) if act_cfg is not None else None
        self.dropout = nn.Dropout(p=dropout_rate) if dropout_rate > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        for layer in (self.norm, self.act, self.dropout):
            if layer is not None:
                x = layer(x)
        return x


@MODELS.register_module()
class StackedLinearClsHead(ClsHead):
    """Hidden layers of ``mid_channels`` widths (each fc -> norm -> activation ->
    dropout), then a linear classifier, on the last feature. Other keyword arguments
    (``loss``, ``topk``, ``cal_acc``, ``init_cfg``) go to :class:`ClsHead`."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mid_channels: Sequence[int],
        dropout_rate: float = 0.0,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (MMPretrain's; None: no activation)
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes <= 0:
            raise ValueError(f"num_classes={num_classes} must be a positive integer")
        if not isinstance(mid_channels, Sequence) or isinstance(mid_channels, str):
            raise TypeError(
                f"mid_channels of StackedLinearClsHead must be a sequence of ints, "
                f"got {type(mid_channels).__name__}"
            )
        if not mid_channels:
            raise ValueError("mid_channels of StackedLinearClsHead needs at least one width")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.mid_channels = list(mid_channels)
        self.dropout_rate, self.norm_cfg, self.act_cfg = dropout_rate, norm_cfg, act_cfg
        self.layers = nn.ModuleList()
        width = in_channels
        for hidden in self.mid_channels:
            self.layers.append(
                LinearBlock(width, hidden, dropout_rate=dropout_rate, norm_cfg=norm_cfg,
                            act_cfg=act_cfg)
            )  # fmt: skip
            width = hidden
        self.layers.append(LinearBlock(width, num_classes))

    @property
    def fc(self) -> LinearBlock:
        """The classifier layer."""
        return self.layers[-1]

    def pre_logits(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The last hidden layer's output for the last stage's feature."""
        x = feats[-1]
        for layer in self.layers[:-1]:
            x = layer(x)
        return x

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))
