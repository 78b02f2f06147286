"""The pure metric maths on hand-computed counts."""

import math

import numpy as np
import pytest
import torch

from vistra.evaluation import functional as F


def test_to_tensor_accepts_tensor_array_sequence_and_rejects_others():
    assert F.to_tensor([1, 2]).tolist() == [1, 2]
    assert F.to_tensor(np.array([3])).tolist() == [3]
    t = torch.tensor([4])
    assert F.to_tensor(t) is t
    with pytest.raises(TypeError, match="str"):
        F.to_tensor("12")


def test_label_accuracy_percent():
    acc = F.label_accuracy(torch.tensor([0, 2, 1, 3]), torch.tensor([0, 1, 2, 3]))
    assert acc.shape == (1,) and acc.item() == 50.0


def test_topk_accuracy_strict_threshold_and_no_threshold():
    scores = torch.tensor([[0.5, 0.3, 0.2], [0.25, 0.5, 0.25], [0.6, 0.3, 0.1]])
    target = torch.tensor([0, 1, 1])
    table = F.topk_accuracy(scores, target, topk=(1, 2), thrs=(None, 0.5))
    # top1 hits: samples 0 and 1; sample 1 scores exactly 0.5, so 'score > 0.5' drops it.
    assert [x.item() for x in table[0]] == pytest.approx([200 / 3, 0.0])
    # top2 adds sample 2 (label 1 second-best at 0.3, under the 0.5 threshold).
    assert [x.item() for x in table[1]] == pytest.approx([100.0, 0.0])


def test_topk_accuracy_k_larger_than_classes_is_an_error():
    with pytest.raises(ValueError, match="Top-5 accuracy is unavailable.*3"):
        F.topk_accuracy(torch.rand(2, 3), torch.tensor([0, 1]), topk=(1, 5))


def test_confusion_matrix_rows_truth_columns_prediction_and_rejections():
    matrix = F.confusion_matrix(torch.tensor([0, 1, -1, 2]), torch.tensor([0, 0, 1, 2]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 2\]"):
        F.confusion_matrix(torch.tensor([0]), torch.tensor([3]), 3)


def test_precision_recall_f1_from_matrix_all_averages():
    # truth -> prediction: class 2 is never predicted (precision 0, not NaN)
    matrix = torch.tensor([[1, 1, 0], [0, 2, 0], [2, 0, 0]])
    p, r, f, s = F.precision_recall_f1_support(matrix, None)
    assert p.tolist() == pytest.approx([100 / 3, 200 / 3, 0.0], rel=1e-6)
    assert r.tolist() == pytest.approx([50.0, 100.0, 0.0])
    assert f.tolist() == pytest.approx([40.0, 80.0, 0.0], rel=1e-6)
    assert s.tolist() == [2, 2, 2]
    p, r, f, s = F.precision_recall_f1_support(matrix, "macro")
    assert (p.item(), r.item(), f.item(), s.item()) == pytest.approx((100 / 3, 50.0, 40.0, 6))
    p, r, f, s = F.precision_recall_f1_support(matrix, "micro")
    assert (p.item(), r.item(), f.item(), s.item()) == pytest.approx((50.0, 50.0, 50.0, 6))
    with pytest.raises(ValueError, match="average must be one of"):
        F.precision_recall_f1_support(matrix, "weighted")


def test_gt_count_overrides_row_sums_for_rejected_samples():
    matrix = torch.tensor([[1, 0], [0, 0]])  # one class-1 sample was rejected
    _, r, _, s = F.precision_recall_f1_support(matrix, None, gt_count=torch.tensor([1, 1]))
    assert r.tolist() == [100.0, 0.0] and s.tolist() == [1, 1]


def test_intersect_and_union_drops_ignored_and_out_of_range_pixels():
    pred = torch.tensor([[0, 0, 1], [1, 1, 0]])
    label = torch.tensor([[0, 1, 1], [255, 1, 7]])  # 255 ignored; 7 is no class of 3
    inter, union, area_pred, area_label = F.intersect_and_union(pred, label, 3, 255)
    assert inter.tolist() == [1, 2, 0]
    assert area_pred.tolist() == [3, 2, 0]  # the pixel under 255 is not counted
    assert area_label.tolist() == [1, 3, 0]
    assert union.tolist() == [3, 3, 0]
    assert inter.dtype == torch.int64


def test_total_area_to_metrics_formulas_order_and_nan():
    inter, union = torch.tensor([2, 2, 0]), torch.tensor([3, 3, 0])
    pred, label = torch.tensor([3, 2, 0]), torch.tensor([2, 3, 0])
    out = F.total_area_to_metrics(inter, union, pred, label, ["mIoU", "mDice", "mFscore"])
    assert list(out) == ["aAcc", "IoU", "Acc", "Dice", "Fscore", "Precision", "Recall"]
    assert float(out["aAcc"]) == pytest.approx(0.8)
    np.testing.assert_allclose(out["IoU"], [2 / 3, 2 / 3, np.nan])
    np.testing.assert_allclose(out["Acc"], [1.0, 2 / 3, np.nan])
    np.testing.assert_allclose(out["Dice"], [0.8, 0.8, np.nan])
    np.testing.assert_allclose(out["Precision"], [2 / 3, 1.0, np.nan])
    np.testing.assert_allclose(out["Recall"], [1.0, 2 / 3, np.nan])
    np.testing.assert_allclose(out["Fscore"], [0.8, 0.8, np.nan])
    f2 = F.total_area_to_metrics(inter, union, pred, label, "mFscore", beta=2)["Fscore"]
    np.testing.assert_allclose(f2, [10 / 11, 10 / 14, np.nan], rtol=1e-6)  # float32
    filled = F.total_area_to_metrics(inter, union, pred, label, ["mIoU"], nan_to_num=-1)
    assert filled["IoU"][2] == -1 and not math.isnan(filled["Acc"][2])


def test_total_area_to_metrics_rejects_unknown_metric():
    z = torch.zeros(2)
    with pytest.raises(KeyError, match="mAP"):
        F.total_area_to_metrics(z, z, z, z, ["mIoU", "mAP"])
