"""DeepCluster (MMSelfSup 1.x): classification into k-means pseudo-labels.

Caron et al., "Deep Clustering for Unsupervised Learning of Visual Features" (2018).
Each epoch ``DeepClusterHook`` extracts the features of the whole dataset, clusters them
(``clustering.Kmeans``: PCA-whitening to 256 dims, k-means with ``k`` = ``num_classes``),
writes the cluster of each sample into the dataset (``clustering_label``, packed as
``pseudo_label.clustering_label``), re-initialises the head and, with
``DeepClusterSampler``, samples the clusters uniformly. The model then trains a plain
classifier: backbone (often ``ResNetSobel``) -> ``AvgPool2dNeck`` -> ``ClsHead``.

As in MMSelfSup the head's cross entropy is weighted per class by ``loss_weight``
(uniform ``1 / num_classes`` unless a hook re-weights it), so the loss is the mean cross
entropy divided by ``num_classes``. ``state_dict`` keys match MMSelfSup's:
``loss_weight``, ``backbone.*``, ``head.fc_cls.*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vistra.data.structures import DataSample
from vistra.models.selfsup import multi_cls_head  # noqa: F401 (registers)
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.npid import first_view
from vistra.models.selfsup.odc import cluster_predictions
from vistra.registry import MODELS


def pseudo_labels(data_samples: Sequence[DataSample] | None) -> torch.Tensor:
    """The ``pseudo_label.clustering_label`` of every sample, flat ``(N,)`` long."""
    labels = []
    for i, sample in enumerate(data_samples or ()):
        pseudo = sample.get("pseudo_label")
        label = getattr(pseudo, "clustering_label", None)
        if label is None:
            raise KeyError(
                f"data sample {i} has no pseudo_label.clustering_label: DeepCluster trains on "
                "the labels DeepClusterHook assigns; pack them with "
                "PackSelfSupInputs(pseudo_label_keys=['clustering_label'])"
            )
        labels.append(torch.as_tensor(label).long().flatten())
    if not labels:
        raise ValueError("DeepCluster.loss needs data samples carrying clustering labels")
    return torch.cat(labels)


@MODELS.register_module(name="DeepCluster", scope="mmselfsup")
class DeepCluster(BaseSelfSupervisor):
    """DeepCluster with MMSelfSup's arguments."""

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone, neck=neck, head=head, pretrained=pretrained,
            data_preprocessor=data_preprocessor, init_cfg=init_cfg,
        )  # fmt: skip
        self.num_classes = self.head.num_classes
        self.register_buffer("loss_weight", torch.full((self.num_classes,), 1.0 / self.num_classes))

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple:
        return self.backbone(first_view(inputs))

    def loss(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
    ) -> dict[str, torch.Tensor]:
        x = self.extract_feat(inputs)
        labels = pseudo_labels(data_samples).to(x[0].device)
        if self.with_neck:
            x = self.neck(x)
        # the class weights follow the buffer (a hook may re-weight it between steps)
        self.head.loss.class_weight = self.loss_weight.tolist()
        return dict(loss=self.head(x, labels))

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
