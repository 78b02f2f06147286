"""Mixup / CutMix / ResizeMix / RandomBatchAugment and the 0.x names (BatchMixup,
BatchCutMix, BatchResizeMix): label mass is kept and images really mix."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vistra.models.utils import CutMix, Mixup, RandomBatchAugment
from vistra.models.utils.batch_augments import BatchCutMix, BatchMixup, BatchResizeMix, ResizeMix
from vistra.registry import MODELS


def _batch(n=4, c=5):
    inputs = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 8, 8).clone()
    scores = F.one_hot(torch.arange(n) % c, c)
    return inputs, scores


@pytest.mark.parametrize(
    "aug",
    [
        Mixup(alpha=0.8),
        CutMix(alpha=1.0),
        CutMix(alpha=1.0, cutmix_minmax=(0.2, 0.8)),
        ResizeMix(alpha=1.0),
        BatchCutMix(alpha=1.0, num_classes=5, prob=0.5),
        BatchMixup(alpha=0.2, num_classes=5),
        BatchResizeMix(alpha=1.0, num_classes=5),
    ],
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


def test_resizemix_pastes_the_whole_other_image_shrunk():
    np.random.seed(3)
    torch.manual_seed(3)
    inputs = torch.rand(4, 3, 16, 16)
    scores = F.one_hot(torch.arange(4), 4)
    aug = ResizeMix(alpha=1.0, lam_min=0.3, lam_max=0.3)
    mixed, mixed_scores = aug(inputs, scores)
    changed = (mixed != inputs).any(dim=1)  # (N, H, W): the pasted box
    ys, xs = changed[0].nonzero(as_tuple=True)
    y1, y2, x1, x2 = ys.min().item(), ys.max().item() + 1, xs.min().item(), xs.max().item() + 1
    kept = mixed_scores[0, 0].item()
    assert abs(kept - (1 - (y2 - y1) * (x2 - x1) / 256)) < 1e-6  # area-corrected lam
    source = mixed_scores[0].argmax() if kept < 0.5 else mixed_scores[0, 1:].argmax() + 1
    shrunk = F.interpolate(inputs[int(source)][None], size=(y2 - y1, x2 - x1), mode="bilinear",
                           align_corners=False)[0]  # fmt: skip
    assert torch.allclose(mixed[0, :, y1:y2, x1:x2], shrunk)


def test_legacy_names_build_from_0x_configs_and_check_their_arguments():
    aug = MODELS.build(dict(type="BatchCutMix", alpha=1.0, num_classes=10, prob=1.0))
    assert isinstance(aug, CutMix) and aug.prob == 1.0
    inputs, scores = _batch(c=5)
    with pytest.raises(ValueError, match=r"num_classes=10\) got scores for 5 classes"):
        aug(inputs, scores)
    never = BatchMixup(alpha=1.0, num_classes=5, prob=0.0)
    out, out_scores = never(inputs, scores)
    assert torch.equal(out, inputs) and torch.equal(out_scores, scores.float())
    with pytest.raises(ValueError, match="prob must be in"):
        BatchCutMix(alpha=1.0, num_classes=5, prob=2)
    with pytest.raises(ValueError, match="lam_min <= lam_max"):
        ResizeMix(alpha=1.0, lam_min=0.9, lam_max=0.1)
    with pytest.raises(ValueError, match="interpolation='cubic'"):
        ResizeMix(alpha=1.0, interpolation="cubic")
