"""ODC: online deep clustering (MMSelfSup 1.x).

Zhan et al., "Online Deep Clustering for Unsupervised Representation Learning" (2020).
A ``DeepClusterHook`` (``init_memory=True``) clusters the whole dataset once before
training and fills ``ODCMemory``; each iteration then classifies the batch into its
current pseudo-labels (``ClsHead`` on the ``ODCNeck`` projection, re-weighted by the
inverse square root of the cluster sizes through ``loss_weight``), blends the batch's
projections into the memory and relabels them by their nearest centroid. ``ODCHook``
updates the centroids, dissolves small clusters and refreshes the re-weighting.

``state_dict`` keys match MMSelfSup's: ``loss_weight``, ``backbone.*``, ``neck.fc0.*``,
``neck.bn0.{running_mean,running_var,num_batches_tracked}`` (no affine), ``neck.fc1.*``,
``head.fc_cls.*``, ``memory_bank.centroids``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.selfsup import memories, multi_cls_head  # noqa: F401 (registers)
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.nonlinear_neck import _norm_2d
from vistra.models.selfsup.npid import first_view, sample_indices
from vistra.registry import MODELS


@MODELS.register_module(name="ODCNeck", scope="mmselfsup")
class ODCNeck(BaseModule):
    """``fc0 - bn0 (affine-free, momentum 0.001) - relu - dropout - fc1 - relu``."""

    def __init__(
        self,
        in_channels: int,
        hid_channels: int,
        out_channels: int,
        with_avg_pool: bool = True,
        norm_cfg: dict = dict(type="SyncBN"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = [  # noqa: B006 (copied by BaseModule)
            dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"])
        ],
    ) -> None:
        super().__init__(init_cfg)
        self.with_avg_pool = with_avg_pool
        if with_avg_pool:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc0 = nn.Linear(in_channels, hid_channels)
        self.bn0 = build_norm_layer(dict(norm_cfg, momentum=0.001, affine=False), hid_channels)[1]
        self.fc1 = nn.Linear(hid_channels, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout()

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(x) != 1:
            raise ValueError(f"ODCNeck takes exactly one feature map, got {len(x)}")
        x = x[0]
        if self.with_avg_pool:
            x = self.avgpool(x)
        x = _norm_2d(self.bn0, self.fc0(x.reshape(x.size(0), -1)))
        x = self.dropout(self.relu(x))
        return [self.relu(self.fc1(x))]


@MODELS.register_module(name="ODC", scope="mmselfsup")
class ODC(BaseSelfSupervisor):
    """ODC with MMSelfSup's arguments (``memory_bank`` an ``ODCMemory`` config)."""

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        memory_bank: dict,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone, neck=neck, head=head, pretrained=pretrained,
            data_preprocessor=data_preprocessor, init_cfg=init_cfg,
        )  # fmt: skip
        self.memory_bank = MODELS.build(memory_bank, key_path="model.memory_bank")
        self.num_classes = self.head.num_classes
        self.register_buffer("loss_weight", torch.full((self.num_classes,), 1.0 / self.num_classes))

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple:
        return self.backbone(first_view(inputs))

    def loss(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
    ) -> dict[str, torch.Tensor]:
        feature = self.extract_feat(inputs)
        idx = sample_indices(data_samples)
        if self.with_neck:
            feature = self.neck(feature)
        labels = self.memory_bank.label_bank[idx.cpu()].to(feature[0].device)
        losses = dict(loss=self.head(feature, labels))
        losses["change_ratio"] = self.memory_bank.update_samples_memory(idx, feature[0].detach())
        return losses

    def forward(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        mode: str = "tensor",
    ) -> Any:
        # MMSelfSup's clustering algorithms also have a 'predict' mode (cluster scores)
        if mode == "predict":
            return cluster_predictions(self, inputs, data_samples)
        return super().forward(inputs, data_samples, mode)


def cluster_predictions(
    model: BaseSelfSupervisor,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    data_samples: Sequence[DataSample] | None,
) -> list[DataSample]:
    """MMSelfSup's ``predict`` of the clustering algorithms: the head's logits per sample,
    as ``pred_label.head{i}`` for the backbone's ``out_indices``."""
    feature = model.extract_feat(inputs)
    if model.with_neck:
        feature = model.neck(feature)
    outs = model.head.logits(feature)
    keys = [f"head{i}" for i in model.backbone.out_indices]
    n = outs[0].size(0)
    samples = list(data_samples) if data_samples else [DataSample() for _ in range(n)]
    for i, sample in enumerate(samples):
        sample.pred_label = DataSample(**{k: out[i] for k, out in zip(keys, outs)})
    return samples
