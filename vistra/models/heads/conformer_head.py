"""``ConformerHead`` (MMPretrain): one linear classifier per Conformer branch.

Keys: ``conv_cls_head`` (on the pooled CNN feature) and ``trans_cls_head`` (on the class
token). ``forward`` returns both scores; predictions use their sum, and the loss is the sum
of both branches' losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.heads.cls_head import ClsHead, topk_accuracy
from vistra.registry import MODELS


@MODELS.register_module()
class ConformerHead(ClsHead):
    """Two linear classifiers on the last stage's ``[conv feature, transformer feature]``.

    ``in_channels`` is ``[conv_dims, trans_dims]``; other keyword arguments (``loss``,
    ``topk``, ``cal_acc``) go to :class:`ClsHead`.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Sequence[int],
        init_cfg: dict | list[dict] | None = dict(type="TruncNormal", layer="Linear", std=0.02),  # noqa: B006
        **kwargs: Any,
    ) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f"num_classes={num_classes} must be a positive integer")
        if not isinstance(in_channels, Sequence) or len(in_channels) != 2:
            raise ValueError(
                f"in_channels must be [conv_channels, trans_channels], got {in_channels!r}"
            )
        self.in_channels, self.num_classes = list(in_channels), num_classes
        self.conv_cls_head = nn.Linear(self.in_channels[0], num_classes)
        self.trans_cls_head = nn.Linear(self.in_channels[1], num_classes)

    def pre_logits(self, feats: tuple[Sequence[torch.Tensor], ...]) -> Sequence[torch.Tensor]:
        """The last stage's ``[conv feature, transformer feature]``."""
        return feats[-1]

    def forward(
        self, feats: tuple[Sequence[torch.Tensor], ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pre_logits(feats)
        if len(x) != 2:
            raise ValueError(
                f"ConformerHead takes [conv feature, transformer feature] stages, got {len(x)}"
            )
        return self.conv_cls_head(x[0]), self.trans_cls_head(x[1])

    def predict(
        self,
        feats: tuple[Sequence[torch.Tensor], ...],
        data_samples: Sequence[DataSample | None] | None = None,
    ) -> list[DataSample]:
        conv_score, trans_score = self(feats)
        return self._get_predictions(conv_score + trans_score, data_samples)

    def _get_loss(
        self, cls_score: tuple[torch.Tensor, ...], data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        if not data_samples:
            raise ValueError("ConformerHead.loss needs data samples with gt_label or gt_score")
        device = cls_score[0].device
        if "gt_score" in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples]).to(device)
        elif "gt_label" in data_samples[0]:
            target = torch.cat([s.gt_label for s in data_samples]).to(device)
        else:
            raise KeyError(f"data samples carry neither gt_label nor gt_score: {data_samples[0]!r}")
        loss = sum(self.loss_module(score, target, avg_factor=score.size(0)) for score in cls_score)
        losses = {"loss": loss}
        if self.cal_acc:
            if target.ndim != 1:
                raise ValueError(
                    "cal_acc needs hard labels; it is pointless with batch augments such as Mixup"
                )
            accs = topk_accuracy((cls_score[0] + cls_score[1]).detach(), target, self.topk)
            losses.update({f"accuracy_top-{k}": a for k, a in zip(self.topk, accs)})
        return losses
