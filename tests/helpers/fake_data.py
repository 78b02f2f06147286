"""Tiny datasets in the real on-disk formats, for the config-tree and end-to-end tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from vistra.data.datasets.shapes import write_shapes_dataset


def write_cifar10(root: Path, n: int = 4, num_classes: int = 10) -> Path:
    """The official python-pickle layout: cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def batch(count: int) -> dict:
        return {
            b"batch_label": b"fake",
            b"labels": [int(x) for x in rng.integers(0, num_classes, count)],
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        }

    for k in range(1, 6):
        (folder / f"data_batch_{k}").write_bytes(pickle.dumps(batch(n), protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n), protocol=2))
    names = [f"class{i}".encode() for i in range(num_classes)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return Path(root)


def write_imagenet_like(root: Path, n_train: int = 4, n_val: int = 2, img_size: int = 64) -> Path:
    """ImageNet/CustomDataset layout (train/<class>/*.png, val/<class>/*.png, meta/*.txt)."""
    write_shapes_dataset(
        root, "cls", num_train=n_train, num_val=n_val, img_size=img_size, num_classes=2
    )
    return Path(root)
