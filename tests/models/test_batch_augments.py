"""Mixup / CutMix / RandomBatchAugment: label mass is kept and images really mix."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vistra.models.utils import CutMix, Mixup, RandomBatchAugment


def _batch(n=4, c=5):
    inputs = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 8, 8).clone()
    scores = F.one_hot(torch.arange(n) % c, c)
    return inputs, scores


@pytest.mark.parametrize(
    "aug", [Mixup(alpha=0.8), CutMix(alpha=1.0), CutMix(alpha=1.0, cutmix_minmax=(0.2, 0.8))]
)
def test_scores_keep_label_mass(aug):
    np.random.seed(0)
    torch.manual_seed(0)
    for _ in range(5):
        inputs, scores = _batch()
        mixed, mixed_scores = aug(inputs, scores)
        assert mixed.shape == inputs.shape and mixed_scores.dtype == torch.float32
        assert torch.allclose(mixed_scores.sum(dim=1), torch.ones(4))
        assert (mixed_scores >= 0).all()


def test_mixup_blends_images_and_labels_with_the_same_lambda():
    np.random.seed(1)
    torch.manual_seed(1)
    inputs, scores = _batch()
    mixed, mixed_scores = Mixup(alpha=1.0)(inputs, scores)
    # image k is the constant k and its score is one-hot at k, so a blend of images must
    # show the same weights as the blend of scores
    for i in range(4):
        expected = sum(k * mixed_scores[i, k].item() for k in range(4))
        assert mixed[i, 0, 0, 0].item() == pytest.approx(expected, abs=1e-5)
    assert not torch.equal(mixed, inputs)


def test_cutmix_score_equals_pasted_area():
    np.random.seed(3)
    torch.manual_seed(3)
    inputs, scores = _batch()
    mixed, mixed_scores = CutMix(alpha=1.0)(inputs, scores)
    for i in range(4):
        own = (mixed[i, 0] == i).float().mean().item()
        if mixed_scores[i, i] < 1:  # pasted from another image
            assert mixed_scores[i, i].item() == pytest.approx(own, abs=1e-6)


def test_random_batch_augment_choice_and_checks():
    inputs, scores = _batch()
    never = RandomBatchAugment([dict(type="Mixup", alpha=1.0)], probs=[0.0])
    out_inputs, out_scores = never(inputs, scores)
    assert torch.equal(out_inputs, inputs) and torch.equal(out_scores, scores.float())
    aug = RandomBatchAugment([dict(type="Mixup", alpha=0.8), dict(type="CutMix", alpha=1.0)])
    assert [type(a).__name__ for a in aug.augments] == ["Mixup", "CutMix"] and aug.probs is None
    with pytest.raises(ValueError, match="same length"):
        RandomBatchAugment([dict(type="Mixup", alpha=1.0)], probs=[0.5, 0.5])
    with pytest.raises(ValueError, match="alpha"):
        Mixup(alpha=0)
