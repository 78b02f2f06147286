"""``EfficientFormerClsHead`` (MMPretrain): a linear classifier ``head`` and, with
``distillation`` (the default, as the published weights), a second one ``dist_head``
whose logits are averaged with the first.

Keys: ``head.{weight,bias}``, ``dist_head.{weight,bias}``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.heads.cls_head import ClsHead
from vistra.registry import MODELS

DISTILLED_TRAINING_WARNING = (
    "{name}: MMPretrain refuses to train the distilled head (it has no teacher); vistra "
    "trains the average of both classifiers' logits on the labels, which is what inference "
    "returns. Set distillation=False for a single classifier."
)


@MODELS.register_module()
class EfficientFormerClsHead(ClsHead):
    """``(head(x) + dist_head(x)) / 2`` of the last backbone output (``head(x)`` alone
    without ``distillation``). Other keyword arguments (``loss``, ``topk``, ``cal_acc``) go
    to :class:`ClsHead`.

    Unlike MMPretrain, which raises ``NotImplementedError`` in ``loss`` when
    ``distillation=True``, the averaged logits are trained (with a warning), so that the
    published configs train as they are.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        distillation: bool = True,
        init_cfg: dict | list[dict] | None = dict(type="Normal", layer="Linear", std=0.01),  # noqa: B006
        **kwargs,
    ) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f"num_classes={num_classes} must be a positive integer")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.dist = distillation
        self.head = nn.Linear(in_channels, num_classes)
        if distillation:
            self.dist_head = nn.Linear(in_channels, num_classes)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = self.pre_logits(feats)
        cls_score = self.head(x)
        if self.dist:
            cls_score = (cls_score + self.dist_head(x)) / 2
        return cls_score

    def loss(
        self, feats: tuple[torch.Tensor, ...], data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        if self.dist:
            warnings.warn(DISTILLED_TRAINING_WARNING.format(name=type(self).__name__), stacklevel=2)
        return super().loss(feats, data_samples)
