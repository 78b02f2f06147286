"""DenseCL: MoCo v2 plus a contrastive loss between dense (per-location) features.

Wang et al., "Dense Contrastive Learning for Self-Supervised Visual Pre-Training" (2021).
The ``DenseCLNeck`` has two branches: a global ``fc - relu - fc`` on the pooled feature
(``q``, contrasted as in MoCo against ``queue``) and a dense ``conv1x1 - relu - conv1x1`` on
the feature map (``q_grid``, ``(N, C, S^2)``). Each query location is matched to the key
location whose *backbone* feature is most similar (argmax of the cosine similarities of
the two views' backbone maps); that key's dense projection is its positive, the pooled
dense projections of earlier batches (``queue2``) its negatives. The loss is
``loss_single * (1 - loss_lambda)`` and ``loss_dense * loss_lambda``. Keys come from a
momentum encoder fed a batch shuffled across ranks, as in :mod:`vistra.models.selfsup.moco`.

Key layout (both packages): ``backbone.*``, ``neck.mlp.{0,2}.*``, ``neck.mlp2.{0,2}.*``,
``encoder_k.steps``, ``encoder_k.module.{0,1}.*``, ``queue``, ``queue_ptr``, ``queue2``,
``queue2_ptr``. As for MoCo, MMPretrain's ``momentum`` is the online weight (0.001) and
MMSelfSup's the key encoder's (0.999); the scoped ``mmselfsup`` variant converts.
MMSelfSup's ``mode='predict'`` (normalised backbone maps for its dense benchmarks) is not
provided: pre-training models here have no predict mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.models.selfsup import contrastive_head  # noqa: F401 (registers)
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.moco import (
    batch_shuffle_ddp,
    batch_unshuffle_ddp,
    check_queue_args,
    enqueue,
    new_queue,
    online_momentum,
    two_views,
)
from vistra.models.selfsup.momentum import ExponentialMovingAverage
from vistra.registry import MODELS


@MODELS.register_module()
class DenseCLNeck(BaseModule):
    """The global (``mlp``) and dense (``mlp2``) projectors of DenseCL, side by side.

    ``num_grid`` pools the feature map to ``num_grid x num_grid`` before the dense branch
    (``None``: keep the backbone's resolution). ``forward`` returns the global vectors
    ``(N, out)``, the dense vectors ``(N, out, S^2)`` and their average ``(N, out)``.
    """

    def __init__(
        self,
        in_channels: int,
        hid_channels: int,
        out_channels: int,
        num_grid: int | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if num_grid is not None and (not isinstance(num_grid, int) or num_grid < 1):
            raise ValueError(
                f"DenseCLNeck num_grid must be None or a positive int, got {num_grid!r}"
            )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hid_channels),
            nn.ReLU(inplace=True),
            nn.Linear(hid_channels, out_channels),
        )
        self.with_pool = num_grid is not None
        if self.with_pool:
            self.pool = nn.AdaptiveAvgPool2d((num_grid, num_grid))
        self.mlp2 = nn.Sequential(
            nn.Conv2d(in_channels, hid_channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hid_channels, out_channels, 1),
        )
        self.avgpool2 = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if len(x) != 1:
            raise ValueError(
                f"DenseCLNeck takes one backbone output, got {len(x)}; set the backbone's "
                "out_indices to a single stage (e.g. out_indices=(3,) for a ResNet)"
            )
        feat = x[0]
        pooled = self.mlp(self.avgpool(feat).flatten(1))
        if self.with_pool:
            feat = self.pool(feat)
        dense = self.mlp2(feat)
        dense_avg = self.avgpool2(dense).flatten(1)
        return pooled, dense.flatten(2), dense_avg


def dense_positives(
    q_b: torch.Tensor, k_b: torch.Tensor, q_grid: torch.Tensor, k_grid: torch.Tensor
) -> torch.Tensor:
    """Per query location, the similarity of its dense projection to that of the key
    location with the most similar backbone feature: ``(N * S^2, 1)``.

    All inputs are L2-normalised along dim 1: ``q_b``/``k_b`` ``(N, C_b, S^2)``,
    ``q_grid``/``k_grid`` ``(N, C, S^2)``.
    """
    match = torch.matmul(q_b.permute(0, 2, 1), k_b).max(dim=2)[1]  # (N, S^2)
    matched = torch.gather(k_grid, 2, match.unsqueeze(1).expand(-1, k_grid.size(1), -1))
    return (q_grid * matched).sum(1).reshape(-1, 1)


def _normalised_map(feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """The one backbone map as ``(N, C, H * W)`` unit vectors per location."""
    x = feats[0]
    return F.normalize(x.reshape(x.size(0), x.size(1), -1), dim=1)


@MODELS.register_module()
class DenseCL(BaseSelfSupervisor):
    """DenseCL with MMPretrain's arguments (``momentum``: the online weight, 0.001)."""

    _target_momentum = False

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        queue_len: int = 65536,
        feat_dim: int = 128,
        momentum: float = 0.001,
        loss_lambda: float = 0.5,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        owner = type(self).__name__
        check_queue_args(owner, queue_len, feat_dim)
        if not 0.0 <= loss_lambda <= 1.0:
            raise ValueError(f"{owner} loss_lambda must be in [0, 1], got {loss_lambda!r}")
        weight = online_momentum(owner, "momentum", momentum, self._target_momentum)
        self.encoder_k = ExponentialMovingAverage(nn.Sequential(self.backbone, self.neck), weight)
        self.queue_len = queue_len
        # a hook may warm it up (MMPretrain's DenseCLHook); the loss reads it at every step
        self.loss_lambda = loss_lambda
        self.register_buffer("queue", new_queue(feat_dim, queue_len))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("queue2", new_queue(feat_dim, queue_len))
        self.register_buffer("queue2_ptr", torch.zeros(1, dtype=torch.long))

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        """Backbone features of a batch, or of the first view when given a list of views."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def _head_loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return self.head.loss(pos, neg)

    def loss(
        self, inputs: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
    ) -> dict[str, torch.Tensor]:
        """The global and dense InfoNCE losses; then both queues take this batch's keys."""
        im_q, im_k = two_views(type(self).__name__, inputs)
        q_feats = self.backbone(im_q)
        q, q_grid, _ = self.neck(q_feats)
        q, q_grid = F.normalize(q, dim=1), F.normalize(q_grid, dim=1)
        q_b = _normalised_map(q_feats)
        with torch.no_grad():
            self.encoder_k.update_parameters(nn.Sequential(self.backbone, self.neck))
            im_k, idx_unshuffle = batch_shuffle_ddp(im_k)
            k_feats = self.encoder_k.module[0](im_k)
            k, k_grid, k2 = self.encoder_k.module[1](k_feats)
            keys = (
                F.normalize(k, dim=1),
                F.normalize(k2, dim=1),
                F.normalize(k_grid, dim=1),
                _normalised_map(k_feats),
            )
            k, k2, k_grid, k_b = (batch_unshuffle_ddp(t, idx_unshuffle) for t in keys)
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.clone().detach()
        l_pos_dense = dense_positives(q_b, k_b, q_grid, k_grid)
        q_rows = q_grid.permute(0, 2, 1).reshape(-1, q_grid.size(1))
        l_neg_dense = q_rows @ self.queue2.clone().detach()
        losses = dict(
            loss_single=self._head_loss(l_pos, l_neg) * (1 - self.loss_lambda),
            loss_dense=self._head_loss(l_pos_dense, l_neg_dense) * self.loss_lambda,
        )
        enqueue(self.queue, self.queue_ptr, k)
        enqueue(self.queue2, self.queue2_ptr, k2)
        return losses


@MODELS.register_module(name="DenseCL", scope="mmselfsup")
class SelfSupDenseCL(DenseCL):
    """DenseCL with MMSelfSup 1.x's arguments: ``momentum`` is the key encoder's weight
    (default 0.999); the head is called directly."""

    _target_momentum = True

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        queue_len: int = 65536,
        feat_dim: int = 128,
        momentum: float = 0.999,
        loss_lambda: float = 0.5,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone, neck, head, queue_len, feat_dim, momentum, loss_lambda, pretrained,
            data_preprocessor, init_cfg,
        )  # fmt: skip

    def _head_loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return self.head(pos, neg)
