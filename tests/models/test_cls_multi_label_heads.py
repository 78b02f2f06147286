"""MultiLabelClsHead, MultiLabelLinearClsHead and CSRAClsHead: multi-hot targets, sigmoid
scores, thr/topk predictions, CSRA's attention pooling against a naive reference."""

import pytest
import torch

from vistra.data.structures import DataSample
from vistra.models.heads.csra_head import CSRAModule
from vistra.registry import MODELS


def _samples(*labels):
    return [DataSample().set_gt_label(list(lab)) for lab in labels]


def test_loss_is_bce_against_the_multi_hot_of_gt_label():
    head = MODELS.build(dict(type="MultiLabelLinearClsHead", num_classes=4, in_channels=3))
    feats = (torch.randn(2, 3),)
    loss = head.loss(feats, _samples([0, 2], [3]))["loss"]
    target = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])
    # summed over classes, averaged over the batch (MMPretrain's avg_factor=batch size)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(head(feats), target, reduction="sum")
    expected = bce / 2
    assert torch.allclose(loss, expected)


def test_predictions_by_threshold_and_by_topk():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    by_thr = MODELS.build(dict(type="MultiLabelClsHead")).predict((logits,))[0]  # thr 0.5
    assert by_thr.pred_label.tolist() == [0, 2]
    assert torch.allclose(by_thr.pred_score, torch.sigmoid(logits[0]))
    by_topk = MODELS.build(dict(type="MultiLabelClsHead", topk=1)).predict((logits,))[0]
    assert by_topk.pred_label.tolist() == [0]
    both = MODELS.build(dict(type="MultiLabelClsHead", thr=0.9, topk=3)).predict((logits,))[0]
    assert both.pred_label.tolist() == []  # thr wins


def test_csra_pooling_equals_a_naive_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 4)
    for t in (1, 4, 99):
        module = CSRAModule(num_classes=3, in_channels=5, T=t, lam=0.2)
        w = module.head.weight[:, :, 0, 0]  # (C, in)
        score = torch.einsum("ci,nihw->nchw", w / w.norm(dim=1, keepdim=True), x).flatten(2)
        if t == 99:
            att = score.max(dim=2).values
        else:
            att = (score * torch.exp(t * score) / torch.exp(t * score).sum(2, keepdim=True)).sum(2)
        assert torch.allclose(module(x), score.mean(2) + 0.2 * att, atol=1e-6)


def test_csra_head_sums_its_heads_and_trains():
    head = MODELS.build(
        dict(type="CSRAClsHead", num_classes=4, in_channels=6, num_heads=2, lam=0.1)
    )
    assert [m.T for m in head.csra_heads] == [1, 99]
    feats = (torch.randn(2, 6, 3, 3, requires_grad=True),)
    head.loss(feats, _samples([1], [0, 3]))["loss"].backward()
    assert head.csra_heads[0].head.weight.grad is not None


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"num_heads=3; valid: \[1, 2, 4, 6, 8\]"):
        MODELS.build(dict(type="CSRAClsHead", num_classes=2, in_channels=2, num_heads=3, lam=0.1))
    with pytest.raises(ValueError, match="thr must be"):
        MODELS.build(dict(type="MultiLabelClsHead", thr=1.5))
    with pytest.raises(ValueError, match="topk must be"):
        MODELS.build(dict(type="MultiLabelClsHead", topk=0))
    head = MODELS.build(dict(type="MultiLabelClsHead"))
    with pytest.raises(ValueError, match=r"outside 0..3"):
        head.loss((torch.randn(1, 4),), _samples([5]))
    csra = MODELS.build(
        dict(type="CSRAClsHead", num_classes=2, in_channels=2, num_heads=1, lam=0.1)
    )
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) feature map"):
        csra((torch.randn(2, 2),))
