"""``LinearClsHead`` (MMPretrain): one fully connected layer, key ``fc``."""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.heads.cls_head import ClsHead
from vistra.registry import MODELS


@MODELS.register_module()
class LinearClsHead(ClsHead):
    """``fc(feats[-1])``; other keyword arguments (``loss``, ``topk``, ``cal_acc``) go to
    :class:`ClsHead`."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        init_cfg: dict | list[dict] | None = dict(type="Normal", layer="Linear", std=0.01),  # noqa: B006
        **kwargs,
    ) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f"num_classes={num_classes} must be a positive integer")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))
