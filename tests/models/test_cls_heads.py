"""GlobalAveragePooling neck, ClsHead and LinearClsHead."""

import pytest
import torch
import torch.nn.functional as F

from vistra.data.structures import DataSample
from vistra.models.heads import ClsHead, LinearClsHead
from vistra.models.necks import GlobalAveragePooling


def test_gap_pools_tuples_and_tensors():
    gap = GlobalAveragePooling()
    x = torch.arange(2 * 3 * 4.0).view(1, 2, 3, 4)
    assert torch.equal(gap(x), x.mean(dim=(2, 3)))
    outs = gap((x, torch.ones(1, 5, 2, 2)))
    assert isinstance(outs, tuple) and [tuple(o.shape) for o in outs] == [(1, 2), (1, 5)]
    assert GlobalAveragePooling(dim=1)(torch.ones(2, 3, 7)).shape == (2, 3)
    assert GlobalAveragePooling().state_dict() == {}
    with pytest.raises(ValueError, match="dim"):
        GlobalAveragePooling(dim=4)


def _samples(labels):
    return [DataSample().set_gt_label(label) for label in labels]


def test_linear_head_keys_and_default_init():
    head = LinearClsHead(num_classes=10, in_channels=64)
    assert sorted(head.state_dict()) == ["fc.bias", "fc.weight"]
    head.init_weights()
    assert (head.fc.bias == 0).all() and head.fc.weight.std() < 0.02


def test_loss_with_hard_labels_and_accuracy():
    head = LinearClsHead(3, 4, cal_acc=True, topk=(1, 2))
    feats = (torch.randn(2, 4),)
    losses = head.loss(feats, _samples([0, 2]))
    scores = head(feats)
    assert torch.allclose(losses["loss"], F.cross_entropy(scores, torch.tensor([0, 2])), atol=1e-6)
    assert {"accuracy_top-1", "accuracy_top-2"} <= set(losses)
    assert 0 <= float(losses["accuracy_top-1"]) <= float(losses["accuracy_top-2"]) <= 100


def test_loss_prefers_gt_score_soft_labels():
    head = ClsHead()
    scores = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    samples = _samples([0, 1])
    soft = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    for s, g in zip(samples, soft):
        s.set_gt_score(g)
    expected = -(soft * F.log_softmax(scores, dim=1)).sum(1).mean()
    assert torch.allclose(head.loss((scores,), samples)["loss"], expected)
    with pytest.raises(ValueError, match="cal_acc"):
        ClsHead(cal_acc=True).loss((scores,), samples)


def test_predict_sets_softmax_scores_and_labels():
    head = ClsHead()
    scores = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    samples = head.predict((scores,), None)
    assert torch.allclose(samples[0].pred_score, F.softmax(scores[0], dim=0))
    assert samples[0].pred_score.sum().item() == pytest.approx(1.0)
    assert samples[0].pred_label.tolist() == [1] and samples[1].pred_label.tolist() == [0]
    given = _samples([1, 0])
    out = head.predict((scores,), given)
    assert out[0] is given[0] and out[0].gt_label.tolist() == [1]
