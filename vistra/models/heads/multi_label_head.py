"""Multi-label classification heads (MMPretrain's ``MultiLabelClsHead``,
``MultiLabelLinearClsHead``): one sigmoid per class.

Loss: the configured loss (binary cross entropy by default) against the samples'
``gt_score`` when they carry one (batch augments), else the multi-hot of their
``gt_label``, averaged over the batch. Predictions: ``pred_score = sigmoid(logits)``;
``pred_label`` holds the classes scoring at least ``thr``, or the ``topk`` best when only
``topk`` is set (``thr`` wins when both are; neither means ``thr=0.5``, as upstream).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.registry import MODELS

_BCE = dict(type="CrossEntropyLoss", use_sigmoid=True)


def multi_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The (num_classes,) 0/1 vector of a sample's label indices."""
    labels = labels.reshape(-1).long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"gt_label {labels.tolist()} holds a class outside 0..{num_classes - 1} "
            "(the head's num_classes)"
        )
    return torch.zeros(num_classes, device=labels.device).index_fill_(0, labels, 1.0)


@MODELS.register_module()
class MultiLabelClsHead(BaseModule):
    """The last feature is the logits (a head with no layer of its own)."""

    def __init__(
        self,
        loss: dict | nn.Module = _BCE,
        thr: float | None = None,
        topk: int | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(loss, nn.Module):
            loss = MODELS.build(dict(loss), key_path="model.head.loss")
        self.loss_module = loss
        if thr is None and topk is None:
            thr = 0.5
        if thr is not None and not 0 <= thr <= 1:
            raise ValueError(f"thr must be a score threshold in [0, 1], got {thr!r}")
        if topk is not None and (not isinstance(topk, int) or isinstance(topk, bool) or topk < 1):
            raise ValueError(f"topk must be a positive int, got {topk!r}")
        self.thr, self.topk = thr, topk

    def pre_logits(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return feats[-1]

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.pre_logits(feats)

    def loss(
        self, feats: tuple[torch.Tensor, ...], data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        cls_score = self(feats)
        if not data_samples:
            raise ValueError(f"{type(self).__name__}.loss needs data samples with gt_label")
        num_classes = cls_score.size(-1)
        if "gt_score" in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples]).float()
        else:
            target = torch.stack([multi_hot(s.gt_label, num_classes) for s in data_samples])
        target = target.to(cls_score.device)
        return {"loss": self.loss_module(cls_score, target, avg_factor=cls_score.size(0))}

    def predict(
        self,
        feats: tuple[torch.Tensor, ...],
        data_samples: Sequence[DataSample | None] | None = None,
    ) -> list[DataSample]:
        return self._get_predictions(self(feats), data_samples)

    def _get_predictions(
        self, cls_score: torch.Tensor, data_samples: Sequence[DataSample | None] | None
    ) -> list[DataSample]:
        pred_scores = torch.sigmoid(cls_score)
        if data_samples is None:
            data_samples = [None] * pred_scores.size(0)
        out = []
        for sample, score in zip(data_samples, pred_scores):
            sample = DataSample() if sample is None else sample
            if self.thr is not None:
                label = torch.where(score >= self.thr)[0]
            else:
                label = score.topk(min(self.topk, score.numel())).indices
            out.append(sample.set_pred_score(score).set_pred_label(label))
        return out


@MODELS.register_module()
class MultiLabelLinearClsHead(MultiLabelClsHead):
    """``fc(feats[-1])``, key ``fc``."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        loss: dict | nn.Module = _BCE,
        thr: float | None = None,
        topk: int | None = None,
        init_cfg: dict | list[dict] | None = dict(type="Normal", layer="Linear", std=0.01),  # noqa: B006
    ) -> None:
        super().__init__(loss=loss, thr=thr, topk=topk, init_cfg=init_cfg)
        if num_classes <= 0:
            raise ValueError(f"num_classes={num_classes} must be a positive integer")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))
