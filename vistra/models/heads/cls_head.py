"""``ClsHead`` (MMPretrain): the loss and prediction logic every classification head shares.

Subclasses define ``pre_logits(feats)`` and ``forward(feats) -> logits``; ``ClsHead`` itself
passes the last feature through as the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.registry import MODELS


def topk_accuracy(
    scores: torch.Tensor, target: torch.Tensor, topk: Sequence[int]
) -> list[torch.Tensor]:
    """Top-k accuracy in percent for each k (a sample counts if its label is in the top k)."""
    maxk = min(max(topk), scores.size(1))
    pred = scores.topk(maxk, dim=1).indices
    hits = pred == target.reshape(-1, 1)
    return [hits[:, : min(k, maxk)].any(dim=1).float().mean() * 100 for k in topk]


@MODELS.register_module()
class ClsHead(BaseModule):
    """Classification head base: cross-entropy loss, softmax predictions.

    ``loss`` reads ``gt_score`` (soft labels from Mixup/CutMix) when the samples have it,
    else ``gt_label``; ``cal_acc`` adds ``accuracy_top-k`` entries (hard labels only).
    """

    def __init__(
        self,
        loss: dict | nn.Module = dict(type="CrossEntropyLoss", loss_weight=1.0),  # noqa: B006
        topk: int | Sequence[int] = (1,),
        cal_acc: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.topk = (topk,) if isinstance(topk, int) else tuple(topk)
        if not self.topk or any(k < 1 for k in self.topk):
            raise ValueError(f"topk must be positive integers, got {topk!r}")
        if not isinstance(loss, nn.Module):
            loss = MODELS.build(loss, key_path="model.head.loss")
        self.loss_module = loss
        self.cal_acc = cal_acc

    def pre_logits(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The feature the classifier layer sees: the last stage's output."""
        return feats[-1]

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.pre_logits(feats)

    def loss(
        self, feats: tuple[torch.Tensor, ...], data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        cls_score = self(feats)
        return self._get_loss(cls_score, data_samples)

    def _get_loss(
        self, cls_score: torch.Tensor, data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        if not data_samples:
            raise ValueError("ClsHead.loss needs data samples with gt_label or gt_score")
        if "gt_score" in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples]).to(cls_score.device)
        elif "gt_label" in data_samples[0]:
            target = torch.cat([s.gt_label for s in data_samples]).to(cls_score.device)
        else:
            raise KeyError(f"data samples carry neither gt_label nor gt_score: {data_samples[0]!r}")
        losses = {"loss": self.loss_module(cls_score, target, avg_factor=cls_score.size(0))}
        if self.cal_acc:
            if target.ndim != 1:
                raise ValueError(
                    "cal_acc needs hard labels; it is pointless with batch augments such as Mixup"
                )
            accs = topk_accuracy(cls_score.detach(), target, self.topk)
            losses.update({f"accuracy_top-{k}": a for k, a in zip(self.topk, accs)})
        return losses

    def predict(
        self,
        feats: tuple[torch.Tensor, ...],
        data_samples: Sequence[DataSample | None] | None = None,
    ) -> list[DataSample]:
        cls_score = self(feats)
        return self._get_predictions(cls_score, data_samples)

    def _get_predictions(
        self, cls_score: torch.Tensor, data_samples: Sequence[DataSample | None] | None
    ) -> list[DataSample]:
        pred_scores = F.softmax(cls_score, dim=1)
        pred_labels = pred_scores.argmax(dim=1, keepdim=True).detach()
        if data_samples is None:
            data_samples = [None] * pred_scores.size(0)
        out = []
        for sample, score, label in zip(data_samples, pred_scores, pred_labels):
            sample = DataSample() if sample is None else sample
            sample.set_pred_score(score).set_pred_label(label)
            out.append(sample)
        return out
