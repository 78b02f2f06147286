"""RelativeLoc: learn features by predicting where a patch lies relative to the centre.

Doersch, Gupta and Efros, "Unsupervised Visual Representation Learning by Context
Prediction" (2015). ``RandomPatchWithLabels`` cuts an image into a 3 x 3 grid of jittered
patches (the centre patch first, then the 8 neighbours, labels ``0 .. 7``);
:class:`RelativeLocDataPreprocessor` pairs each neighbour with the centre patch (two
``(8N, C, h, w)`` batches). Both go through the backbone, their features are concatenated
along channels, :class:`RelativeLocNeck` (``fc - BN - ReLU - dropout``) fuses them and the
MMSelfSup ``ClsHead`` classifies the 8 positions with cross-entropy.

Key layout (MMSelfSup): ``backbone.*``, ``neck.fc.*``, ``neck.bn.*``, ``head.fc_cls.*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.data_preprocessor import SelfSupDataPreprocessor
from vistra.models.selfsup.rotation_pred import _LINEAR_BN_INIT, _as_views, pseudo_labels
from vistra.registry import MODELS


@MODELS.register_module()
class RelativeLocDataPreprocessor(SelfSupDataPreprocessor):
    """Normalise the 9 patches; return ``[neighbours (8N), centre repeated (8N)]``."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        views = _as_views("RelativeLocDataPreprocessor (RandomPatchWithLabels)", data["inputs"], 9)
        neighbours = torch.stack(views[1:], 1)
        neighbours = neighbours.view(-1, *neighbours.shape[2:])
        centre = views[0].unsqueeze(1).repeat(1, 8, 1, 1, 1)
        centre = centre.view(-1, *centre.shape[2:])
        data["inputs"] = [neighbours, centre]
        return data


@MODELS.register_module()
class RelativeLocNeck(BaseModule):
    """Pool, then ``fc`` of the concatenated pair features, BN (momentum 0.003), ReLU and
    dropout (p = 0.5)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        with_avg_pool: bool = True,
        norm_cfg: dict = dict(type="BN1d"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = _LINEAR_BN_INIT,  # noqa: B006 (copied)
    ) -> None:
        super().__init__(init_cfg)
        self.with_avg_pool = with_avg_pool
        if with_avg_pool:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels * 2, out_channels)
        self.bn = build_norm_layer(dict(**norm_cfg, momentum=0.003), out_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout()

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(x) != 1:
            raise ValueError(f"RelativeLocNeck takes one feature map, got {len(x)}")
        feat = x[0]
        if self.with_avg_pool:
            feat = self.avgpool(feat)
        feat = self.fc(feat.view(feat.size(0), -1))
        return [self.dropout(self.relu(self.bn(feat)))]


@MODELS.register_module()
class RelativeLoc(BaseSelfSupervisor):
    """Relative patch location (MMSelfSup's arguments); needs ``pseudo_label.patch_label``."""

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(
        self, inputs: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
    ) -> dict[str, torch.Tensor]:
        neighbours, centre = _as_views("RelativeLoc", inputs, 2)
        x1, x2 = self.backbone(neighbours), self.backbone(centre)
        x = self.neck((torch.cat((x1[0], x2[0]), dim=1),))
        labels = pseudo_labels("RelativeLoc", data_samples, "patch_label")
        return dict(loss=self.head(x, labels.to(x[0].device)))
