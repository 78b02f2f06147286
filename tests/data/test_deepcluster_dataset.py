"""DeepClusterImageNet: every sample carries the clustering label its hook assigned."""

from __future__ import annotations

import pytest

from vistra.data.datasets.shapes import write_shapes_dataset
from vistra.registry import DATASETS


def _dataset(root):
    write_shapes_dataset(root, "cls", num_train=4, num_val=2, img_size=16, num_classes=2)
    return DATASETS.build(
        dict(
            type="DeepClusterImageNet",
            data_root=str(root),
            ann_file="meta/train.txt",
            data_prefix="train",
            pipeline=[dict(type="LoadImageFromFile")],
        )
    )


def test_labels_start_at_minus_one_and_follow_assign_labels(tmp_path):
    dataset = _dataset(tmp_path)
    assert [dataset[i]["clustering_label"] for i in range(len(dataset))] == [-1] * 4
    dataset.assign_labels([1, 0, 1, 1])
    assert [dataset[i]["clustering_label"] for i in range(4)] == [1, 0, 1, 1]
    assert dataset[0]["img"].shape == (16, 16, 3)


def test_wrong_number_of_labels_names_both_counts(tmp_path):
    dataset = _dataset(tmp_path)
    with pytest.raises(ValueError, match="got 3 labels for 4 samples"):
        dataset.assign_labels([0, 1, 0])
