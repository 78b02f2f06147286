"""Losses against hand-computed values: MMPretrain and MMSegmentation semantics."""

import math

import pytest
import torch
import torch.nn.functional as F

from vistra.models.losses import (
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LabelSmoothLoss,
    weight_reduce_loss,
)
from vistra.registry import MODELS

LOGITS = torch.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]])
LABELS = torch.tensor([2, 0])
L1 = math.log(math.e + math.e**2 + math.e**3) - 3  # CE of sample 1
L2 = math.log(math.e + 2) - 1  # CE of sample 2


def close(t: torch.Tensor, value: float) -> bool:
    return math.isclose(float(t), value, rel_tol=1e-5, abs_tol=1e-6)


def test_weight_reduce_loss_rules():
    loss = torch.tensor([1.0, 2.0, 3.0])
    assert close(weight_reduce_loss(loss, torch.tensor([1.0, 0.0, 1.0])), 4 / 3)
    assert close(weight_reduce_loss(loss, reduction="sum"), 6)
    assert close(weight_reduce_loss(loss, avg_factor=2), 3)
    assert torch.equal(weight_reduce_loss(loss, reduction="none"), loss)
    with pytest.raises(ValueError, match="avg_factor"):
        weight_reduce_loss(loss, reduction="sum", avg_factor=2)
    with pytest.raises(ValueError, match="reduction"):
        weight_reduce_loss(loss, reduction="avg")


def test_ce_hard_labels_mmpretrain():
    ce = CrossEntropyLoss()
    assert close(ce(LOGITS, LABELS), (L1 + L2) / 2)
    assert close(ce(LOGITS, LABELS, avg_factor=2), (L1 + L2) / 2)
    assert close(
        CrossEntropyLoss(loss_weight=2.0)(LOGITS, LABELS, reduction_override="sum"), 2 * (L1 + L2)
    )
    # class weights scale each term; the mean still divides by the number of samples
    assert close(CrossEntropyLoss(class_weight=[1.0, 2.0, 3.0])(LOGITS, LABELS), (3 * L1 + L2) / 2)


def test_ce_soft_labels_and_use_soft():
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    logp = F.log_softmax(LOGITS, dim=1)
    expected = -(soft * logp).sum(1).mean()
    assert close(CrossEntropyLoss()(LOGITS, soft), float(expected))
    assert close(CrossEntropyLoss(use_soft=True)(LOGITS, soft, avg_factor=2), float(expected))
    weighted = -(soft * logp * torch.tensor([1.0, 2.0, 3.0])).sum(1).mean()
    assert close(
        CrossEntropyLoss(use_soft=True, class_weight=[1, 2, 3])(LOGITS, soft), float(weighted)
    )
    with pytest.raises(ValueError, match="use_soft"):
        CrossEntropyLoss(use_soft=True)(LOGITS, LABELS)


def test_ce_label_smoothing_option_matches_torch_and_label_smooth_loss():
    ours = CrossEntropyLoss(label_smoothing=0.1)(LOGITS, LABELS)
    assert torch.allclose(ours, F.cross_entropy(LOGITS, LABELS, label_smoothing=0.1))
    assert torch.allclose(ours, LabelSmoothLoss(0.1, num_classes=3)(LOGITS, LABELS), atol=1e-6)


def test_ce_sigmoid_mmpretrain_multilabel():
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    bce = F.binary_cross_entropy_with_logits(LOGITS, target, reduction="none")
    assert close(CrossEntropyLoss(use_sigmoid=True)(LOGITS, target), float(bce.mean()))
    # ClsHead passes avg_factor=N: the sum is divided by the samples, not the elements
    assert close(
        CrossEntropyLoss(use_sigmoid=True)(LOGITS, target, avg_factor=2), float(bce.sum() / 2)
    )
    cw = torch.tensor([1.0, 2.0, 3.0])
    assert close(
        CrossEntropyLoss(use_sigmoid=True, class_weight=cw.tolist())(LOGITS, target),
        float((bce * cw).mean()),
    )
    pw = F.binary_cross_entropy_with_logits(LOGITS, target, pos_weight=cw)
    assert close(
        CrossEntropyLoss(use_sigmoid=True, pos_weight=[1, 2, 3])(LOGITS, target), float(pw)
    )


# Dense: C=2, one row of three pixels, labels [0, 1, ignored]
SEG_LOGITS = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 1.0, 3.0]]]])
SEG_LABELS = torch.tensor([[[0, 1, 255]]])
P0 = math.log(1 + math.exp(-2.0))  # CE of pixel 0 (label 0)
P1 = math.log(1 + math.exp(-1.0))  # CE of pixel 1 (label 1)


def test_ce_dense_ignore_and_avg_non_ignore():
    assert close(CrossEntropyLoss()(SEG_LOGITS, SEG_LABELS), (P0 + P1) / 3)  # ignored pixels count
    assert close(CrossEntropyLoss(avg_non_ignore=True)(SEG_LOGITS, SEG_LABELS), (P0 + P1) / 2)
    torch_mean = F.cross_entropy(SEG_LOGITS, SEG_LABELS, ignore_index=255)
    assert torch.allclose(CrossEntropyLoss(avg_non_ignore=True)(SEG_LOGITS, SEG_LABELS), torch_mean)
    # an explicit ignore_index from the decode head wins
    labels = torch.tensor([[[0, 1, 1]]])
    assert close(CrossEntropyLoss(avg_non_ignore=True)(SEG_LOGITS, labels, ignore_index=1), P0)
    # all pixels ignored: zero, not NaN
    assert (
        float(CrossEntropyLoss(avg_non_ignore=True)(SEG_LOGITS, torch.full((1, 1, 3), 255))) == 0.0
    )


def test_ce_dense_class_weight_averaging():
    cw = [1.0, 3.0]
    weighted = CrossEntropyLoss(class_weight=cw, avg_non_ignore=True)(SEG_LOGITS, SEG_LABELS)
    assert close(weighted, (P0 + 3 * P1) / 4)
    torch_mean = F.cross_entropy(SEG_LOGITS, SEG_LABELS, weight=torch.tensor(cw), ignore_index=255)
    assert torch.allclose(weighted, torch_mean)
    assert close(CrossEntropyLoss(class_weight=cw)(SEG_LOGITS, SEG_LABELS), (P0 + 3 * P1) / 5)


def test_ce_dense_sigmoid_masks_ignored_pixels():
    logits = torch.tensor([[[[0.5, -1.0]], [[2.0, 0.3]]]])
    labels = torch.tensor([[[1, 255]]])
    onehot = torch.tensor([[[[0.0, 0.0]], [[1.0, 0.0]]]])
    bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")[..., 0]
    assert close(CrossEntropyLoss(use_sigmoid=True)(logits, labels), float(bce.sum() / 4))
    assert close(
        CrossEntropyLoss(use_sigmoid=True, avg_non_ignore=True)(logits, labels),
        float(bce.sum() / 2),
    )


def test_ce_arguments_are_checked_and_loss_name():
    with pytest.raises(ValueError, match="exclude"):
        CrossEntropyLoss(use_sigmoid=True, use_soft=True)
    with pytest.raises(ValueError, match="reduction"):
        CrossEntropyLoss(reduction="avg")
    assert CrossEntropyLoss(loss_name="loss_aux").loss_name == "loss_aux"
    built = MODELS.build(
        dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4, avg_non_ignore=True)
    )
    assert built.loss_weight == 0.4


def test_label_smooth_loss_modes_hand_computed():
    logits = torch.tensor([[0.2, -0.4, 1.0]])
    logp = F.log_softmax(logits, dim=1)[0]
    t = torch.full((3,), 0.1 / 3)
    t[2] += 0.9
    assert close(
        LabelSmoothLoss(0.1, num_classes=3)(logits, torch.tensor([2])), float(-(t * logp).sum())
    )
    eps = 0.1 / 1.1
    t = torch.full((3,), eps / 3)
    t[2] += 1 - eps
    got = LabelSmoothLoss(0.1, num_classes=3, mode="classy_vision")(logits, torch.tensor([2]))
    assert close(got, float(-(t * logp).sum()))
    multi = torch.tensor([[1, 0, 1]])
    target = torch.tensor([[0.9, 0.1, 0.9]])
    got = LabelSmoothLoss(0.1, mode="multi_label")(logits, multi)
    assert close(got, float(F.binary_cross_entropy_with_logits(logits, target)))
    with pytest.raises(ValueError, match="num_classes=4"):
        LabelSmoothLoss(0.1, num_classes=4)(logits, torch.tensor([2]))
    with pytest.raises(ValueError, match="mode"):
        LabelSmoothLoss(0.1, mode="smooth")


def test_dice_loss_hand_computed():
    logits = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])
    target = torch.tensor([[[0, 255]]])
    p = logits.softmax(dim=1).flatten()
    t = torch.tensor([1.0, 0.0, 0.0, 0.0])  # the ignored pixel has an all-zero target
    inter = (p * t).sum()
    expected = 1 - 2 * inter / ((p * p).sum() + 1e-3 + (t * t).sum() + 1e-3)
    got = DiceLoss(use_sigmoid=False)(logits, target)
    assert close(got, float(expected))
    naive = 1 - (2 * inter + 1e-3) / (p.sum() + t.sum() + 1e-3)
    assert close(DiceLoss(use_sigmoid=False, naive_dice=True)(logits, target), float(naive))
    assert DiceLoss().loss_name == "loss_dice"


def test_focal_loss_hand_computed_and_ignore():
    logits = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]])
    labels = torch.tensor([2, 255])
    t = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    p = logits.sigmoid()
    one_minus_pt = (1 - p) * t + p * (1 - t)
    focal = (0.5 * t + 0.5 * (1 - t)) * one_minus_pt**2
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    valid = torch.tensor([[1.0], [0.0]])
    expected = (bce * focal * valid).sum() / 6  # ignored samples still count in the mean
    assert close(FocalLoss()(logits, labels), float(expected))
    dense = torch.randn(2, 3, 4, 5)
    out = FocalLoss()(dense, torch.randint(0, 3, (2, 4, 5)), reduction_override="none")
    assert out.shape == dense.shape
    with pytest.raises(ValueError, match="use_sigmoid"):
        FocalLoss(use_sigmoid=False)
