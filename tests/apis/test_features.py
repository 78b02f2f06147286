"""FeatureExtractor: per-image backbone/neck features of a classifier and of MAE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vistra.apis import FeatureExtractor, get_model

REPO = Path(__file__).resolve().parents[2]


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_mae_features_are_unmasked_and_batch_independent():
    model = get_model(REPO / "configs/quickstart/mae_shapes.py", pretrained=False)
    extractor = FeatureExtractor(model)
    images = _images(3)
    one_by_one = extractor(images, batch_size=1)
    batched = extractor(images, batch_size=3)
    assert len(one_by_one) == len(batched) == 3
    feats = one_by_one[0]
    assert isinstance(feats, tuple) and feats[0].shape[-1] == 96  # ViT width; no batch dim
    for a, b in zip(one_by_one, batched):  # MAE masks at random: equal means no masking
        for fa, fb in zip(a, b):
            torch.testing.assert_close(fa, fb, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="backbone features only"):
        extractor(images[0], stage="neck")
    with pytest.raises(ValueError, match="stage must be one of"):
        extractor(images[0], stage="head")


def test_classifier_backbone_and_neck_stages():
    model = get_model(REPO / "configs/quickstart/cls_shapes.py", pretrained=False)
    extractor = FeatureExtractor(model, pretrained=False)
    image = _images(1)[0]
    backbone = extractor(image, stage="backbone")[0]
    neck = extractor([image], stage="neck")[0]
    assert [tuple(f.shape) for f in backbone] == [(128, 2, 2)]
    assert [tuple(f.shape) for f in neck] == [(128,)]
    torch.testing.assert_close(neck[0], backbone[0].mean(dim=(1, 2)))  # global average pool
