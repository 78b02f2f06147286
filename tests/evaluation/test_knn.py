"""Weighted kNN classification (MMSelfSup's protocol) and feature extraction for it."""

from __future__ import annotations

import math

import pytest
import torch

from vistra.engine.build import build_dataloader
from vistra.evaluation.knn import extract_features, knn_eval, knn_eval_many, pool_features
from vistra.registry import MODELS


def clusters(num_classes: int, per_class: int, dim: int = 16, noise: float = 0.05, seed: int = 0):
    """Points around orthogonal directions, one per class: perfectly separable."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:num_classes] * 3.0
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    feats = centres[labels] + noise * torch.randn(len(labels), dim, generator=g)
    return feats, labels


def test_separable_features_are_classified_perfectly():
    train_x, train_y = clusters(4, 30, seed=0)
    test_x, test_y = clusters(4, 10, seed=1)
    results = knn_eval_many(train_x, train_y, test_x, test_y, [1, 5, 20, 200])
    assert results == {k: (100.0, 100.0) for k in (1, 5, 20, 200)}  # 200 > 120: all neighbours


# Hand-checked case. Unit train vectors, test x = (1, 0) of class 0:
#   a = (1, 0) class 0, sim 1.0 | b = (.8, .6) class 1, sim .8 | c = (.6, .8) class 1, sim .6
#   d = (-1, 0) class 2, sim -1
# k = 3 (a, b, c), votes exp(sim / T):
#   T = 0.5:  class 0 e^2 = 7.39;       class 1 e^1.6 + e^1.2 = 4.95 + 3.32 = 8.27 -> class 1
#   T = 0.07: class 0 e^14.3 = 1.6e6;   class 1 e^11.4 + e^8.6 = 9.2e4 + 5.3e3     -> class 0
# Unweighted majority would say class 1; the sharp default temperature trusts the closest.
TRAIN = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [-1.0, 0.0]])
TRAIN_Y = torch.tensor([0, 1, 1, 2])
TEST = torch.tensor([[1.0, 0.0]])
TEST_Y = torch.tensor([0])


def test_hand_checked_weighting():
    assert math.exp(2) < math.exp(1.6) + math.exp(1.2)  # the arithmetic above
    assert math.exp(1 / 0.07) > math.exp(0.8 / 0.07) + math.exp(0.6 / 0.07)
    assert knn_eval(TRAIN, TRAIN_Y, TEST, TEST_Y, k=3, T=0.5) == (0.0, 100.0)
    assert knn_eval(TRAIN, TRAIN_Y, TEST, TEST_Y, k=3, T=0.07) == (100.0, 100.0)
    assert knn_eval(TRAIN, TRAIN_Y, TEST, TEST_Y, k=1, T=0.5) == (100.0, 100.0)
    # a test sample of class 2 next to d; with k = 3 its class gets no vote at all
    test = torch.tensor([[-1.0, 0.1]])
    assert knn_eval(TRAIN, TRAIN_Y, test, torch.tensor([2]), k=1) == (100.0, 100.0)
    assert knn_eval(TRAIN, TRAIN_Y, torch.tensor([[1.0, 0.0]]), torch.tensor([2]), k=3) == (
        0.0,
        0.0,  # not "top-5" through a tie among unvoted classes
    )


def test_cosine_similarity_ignores_feature_scale_unless_told():
    scaled = TRAIN * torch.tensor([[1.0], [5.0], [5.0], [1.0]])
    assert knn_eval(scaled, TRAIN_Y, TEST * 3, TEST_Y, k=3) == (100.0, 100.0)
    # raw dot products: b and c now look 5x closer than a, so class 1 wins
    assert knn_eval(scaled, TRAIN_Y, TEST, TEST_Y, k=3, normalize=False) == (0.0, 100.0)


def reference_knn(train_x, train_y, test_x, test_y, k, T, num_classes):
    """A direct loop over test samples, for comparison."""
    train_x = torch.nn.functional.normalize(train_x, dim=1)
    test_x = torch.nn.functional.normalize(test_x, dim=1)
    top1 = top5 = 0
    for x, y in zip(test_x, test_y.tolist()):
        sims = train_x @ x
        best = sims.argsort(descending=True)[:k]
        votes = torch.zeros(num_classes, dtype=torch.float64)
        for i in best:
            votes[train_y[i]] += math.exp(sims[i].item() / T)
        ranked = [c for c in votes.argsort(descending=True).tolist() if votes[c] > 0][:5]
        top1 += ranked[0] == y
        top5 += y in ranked
    n = len(test_y)
    return 100.0 * top1 / n, 100.0 * top5 / n


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_matches_a_direct_computation_for_any_chunking(chunk_size):
    g = torch.Generator().manual_seed(3)
    train_x, test_x = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    train_y = torch.randint(0, 7, (60,), generator=g)
    test_y = torch.randint(0, 7, (25,), generator=g)
    got = knn_eval_many(
        train_x, train_y, test_x, test_y, [1, 3, 10], T=0.1, num_classes=7, chunk_size=chunk_size
    )
    for k in (1, 3, 10):
        want = reference_knn(train_x, train_y, test_x, test_y, k, 0.1, 7)
        assert got[k] == pytest.approx(want), k
    assert got[1][0] == got[1][1]  # one neighbour, one voted class


def test_bad_inputs_are_named():
    x, y = clusters(2, 3)
    with pytest.raises(ValueError, match="k >= 1"):
        knn_eval(x, y, x, y, k=0)
    with pytest.raises(ValueError, match="temperature"):
        knn_eval(x, y, x, y, k=1, T=0.0)
    with pytest.raises(ValueError, match="same N"):
        knn_eval(x, y[:-1], x, y, k=1)
    with pytest.raises(ValueError, match="width"):
        knn_eval(x, y, x[:, :3], y, k=1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        knn_eval(x, y, x, y, k=1, num_classes=1)


def test_pool_features():
    x = torch.arange(24.0).reshape(2, 3, 4)  # (N, L, C) tokens
    assert torch.equal(pool_features((x,)), x[:, 0])
    assert torch.equal(pool_features((x,), cls_token=False), x.mean(1))
    fmap = torch.randn(2, 5, 3, 3)
    assert torch.equal(pool_features((torch.zeros(2, 1, 1, 1), fmap)), fmap.mean((2, 3)))
    cls = torch.randn(2, 6)
    assert torch.equal(pool_features(([fmap, cls],)), cls)  # MMPretrain 0.x [patch, cls]
    assert torch.equal(pool_features(cls), cls)
    with pytest.raises(ValueError, match="shape"):
        pool_features(torch.zeros(2))


def test_extract_features_in_dataset_order():
    model = MODELS.build(
        dict(
            type="ImageClassifier",
            backbone=dict(
                type="VisionTransformer",
                arch=dict(embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32),
                img_size=32,
                patch_size=8,
            ),
            data_preprocessor=dict(mean=[127.5] * 3, std=[64.0] * 3, to_rgb=True),
        )
    )
    model.init_weights()
    dataset = dict(type="ShapesDataset", num_samples=7, num_classes=3, img_size=32, split="val")
    loader_cfg = dict(
        batch_size=3, dataset=dict(dataset, pipeline=[dict(type="PackInputs")]), sampler=None
    )
    loader = build_dataloader(loader_cfg, "loader", seed=0, rank=0)
    feats, labels = extract_features(model, loader, len(loader.dataset))
    assert feats.shape == (7, 16) and feats.dtype == torch.float32
    want = [int(loader.dataset[i]["data_samples"].gt_label) for i in range(7)]
    assert labels.tolist() == want
    # the class token of the backbone output, computed sample by sample
    one = model.data_preprocessor(
        {"inputs": [loader.dataset[4]["inputs"]], "data_samples": None}, training=False
    )
    with torch.no_grad():
        cls = model.backbone(one["inputs"])[-1]
    torch.testing.assert_close(feats[4:5], cls, rtol=1e-5, atol=1e-5)
