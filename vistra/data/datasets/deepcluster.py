"""``DeepClusterImageNet``: ImageNet whose samples carry the clustering labels that
DeepCluster's and ODC's hooks assign (MMSelfSup 1.0's dataset of that name).

Each sample gets ``clustering_label`` (-1 until the first clustering), which the training
pipeline packs as ``pseudo_label.clustering_label`` (``PackSelfSupInputs(pseudo_label_keys=
['clustering_label'])``). The labels live in the dataset object only: with worker processes
they reach the workers when the loader starts its next epoch's iterator (the hooks assign
them between epochs, before that), as upstream.
"""

from __future__ import annotations

from typing import Any

from vistra.data.datasets.imagenet import ImageNet
from vistra.registry import DATASETS


@DATASETS.register_module()
class DeepClusterImageNet(ImageNet):
    """ImageNet with per-sample ``clustering_label``; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clustering_labels: list[int] = [-1] * len(self)

    def assign_labels(self, labels: list[int]) -> None:
        """Replace the clustering labels (one per sample, in dataset order)."""
        if len(labels) != len(self.clustering_labels):
            raise ValueError(
                f"{type(self).__name__}.assign_labels: got {len(labels)} labels for "
                f"{len(self.clustering_labels)} samples"
            )
        self.clustering_labels = [int(label) for label in labels]

    def prepare_data(self, idx: int) -> Any:
        data_info = self.get_data_info(idx)
        data_info["clustering_label"] = int(self.clustering_labels[idx])
        return self.pipeline(data_info)
