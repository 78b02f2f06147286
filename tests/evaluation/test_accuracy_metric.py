"""Accuracy and SingleLabelMetric: keys, formulas and edge cases as MMPretrain."""

import pytest
import torch

from vistra.data.structures import DataSample
from vistra.evaluation import Accuracy, Evaluator, SingleLabelMetric
from vistra.registry import METRICS

# 6 classes, distinct scores; the true class ranks 1st, 2nd, 6th and 1st.
SCORES = torch.tensor(
    [
        [0.40, 0.25, 0.15, 0.10, 0.06, 0.04],
        [0.30, 0.35, 0.15, 0.10, 0.06, 0.04],
        [0.04, 0.06, 0.10, 0.15, 0.25, 0.40],
        [0.05, 0.10, 0.50, 0.20, 0.12, 0.03],
    ]
)
TARGETS = [0, 0, 0, 2]


def score_samples(scores, targets):
    return [
        {"pred_score": s, "gt_label": torch.tensor([t]), "pred_label": s.argmax().reshape(1)}
        for s, t in zip(scores, targets)
    ]


def run(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_accuracy_top1_top5_with_prefix():
    out = run(Accuracy(topk=(1, 5)), score_samples(SCORES, TARGETS))
    assert out == pytest.approx({"accuracy/top1": 50.0, "accuracy/top5": 75.0})
    assert list(out) == ["accuracy/top1", "accuracy/top5"]


def test_accuracy_several_thresholds_keys_and_strictness():
    out = run(Accuracy(topk=(1, 5), thrs=(0.0, 0.38, 0.5, None)), score_samples(SCORES, TARGETS))
    assert out == pytest.approx(
        {
            "accuracy/top1_thr-0.00": 50.0,
            "accuracy/top1_thr-0.38": 50.0,
            "accuracy/top1_thr-0.50": 0.0,  # sample 3 scores exactly 0.5: not above
            "accuracy/top1_no-thr": 50.0,
            "accuracy/top5_thr-0.00": 75.0,
            "accuracy/top5_thr-0.38": 50.0,  # sample 1's true class scores 0.30
            "accuracy/top5_thr-0.50": 0.0,
            "accuracy/top5_no-thr": 75.0,
        }
    )


def test_accuracy_pred_label_only_gives_top1_only():
    samples = [
        {"pred_label": torch.tensor([p]), "gt_label": torch.tensor([t])}
        for p, t in zip([0, 1, 2, 2], [0, 1, 1, 2])
    ]
    assert run(Accuracy(topk=(1, 5)), samples) == {"accuracy/top1": 75.0}


def test_accuracy_topk_beyond_classes_names_the_config_keys():
    with pytest.raises(ValueError, match="Top-5 .*val_evaluator"):
        run(Accuracy(topk=5), score_samples(SCORES[:, :3], TARGETS))


def test_accuracy_calculate_static_forms():
    assert Accuracy.calculate([0, 2, 1, 3], [0, 1, 2, 3]).tolist() == [50.0]
    table = Accuracy.calculate(SCORES, TARGETS, topk=(1, 5), thrs=(0.0,))
    assert [[x.item() for x in row] for row in table] == [[50.0], [75.0]]
    with pytest.raises(ValueError, match="doesn't match"):
        Accuracy.calculate([0, 1], [0])


def test_accuracy_arguments_are_checked_and_missing_fields_named():
    with pytest.raises(ValueError, match="topk"):
        Accuracy(topk=(0,))
    with pytest.raises(KeyError, match="gt_label"):
        Accuracy().process(None, [{"pred_score": torch.rand(3)}])
    with pytest.raises(ValueError, match="no results"):
        Accuracy().evaluate(0)


def test_accuracy_built_from_registry_with_scope_prefix():
    metric = METRICS.build({"type": "mmpretrain.Accuracy", "topk": (1, 5), "prefix": "val"})
    assert isinstance(metric, Accuracy) and metric.topk == (1, 5) and metric.prefix == "val"


# truth -> prediction: [[1, 1, 0], [0, 2, 0], [2, 0, 0]]; class 2 is never predicted.
SL_TARGETS = [0, 0, 1, 1, 2, 2]
SL_SCORES = torch.tensor(
    [
        [0.6, 0.3, 0.1],  # -> 0, kept at thr 0.5
        [0.3, 0.45, 0.25],  # -> 1, rejected at 0.5
        [0.1, 0.8, 0.1],  # -> 1, kept
        [0.2, 0.5, 0.3],  # -> 1, exactly 0.5: rejected
        [0.7, 0.2, 0.1],  # -> 0, kept
        [0.5, 0.25, 0.25],  # -> 0, rejected
    ]
)


def test_single_label_macro():
    out = run(SingleLabelMetric(), score_samples(SL_SCORES, SL_TARGETS))
    assert out == pytest.approx(
        {
            "single-label/precision": 100 / 3,
            "single-label/recall": 50.0,
            "single-label/f1-score": 40.0,
        }
    )


def test_single_label_micro_suffix():
    out = run(SingleLabelMetric(average="micro"), score_samples(SL_SCORES, SL_TARGETS))
    assert out == pytest.approx(
        {
            "single-label/precision_micro": 50.0,
            "single-label/recall_micro": 50.0,
            "single-label/f1-score_micro": 50.0,
        }
    )


def test_single_label_classwise_lists_with_support_and_zero_division():
    metric = SingleLabelMetric(average=None, items=("precision", "recall", "f1-score", "support"))
    out = run(metric, score_samples(SL_SCORES, SL_TARGETS))
    assert out["single-label/precision_classwise"] == pytest.approx([100 / 3, 200 / 3, 0.0])
    assert out["single-label/recall_classwise"] == pytest.approx([50.0, 100.0, 0.0])
    assert out["single-label/f1-score_classwise"] == pytest.approx([40.0, 80.0, 0.0])
    assert out["single-label/support_classwise"] == [2, 2, 2]


def test_single_label_several_thresholds():
    out = run(SingleLabelMetric(thrs=(0.0, 0.5)), score_samples(SL_SCORES, SL_TARGETS))
    # At 0.5 only samples 0, 2, 4 keep a class: tp [1, 1, 0], predicted [2, 1, 0], truth [2, 2, 2].
    assert out == pytest.approx(
        {
            "single-label/precision_thr-0.00": 100 / 3,
            "single-label/recall_thr-0.00": 50.0,
            "single-label/f1-score_thr-0.00": 40.0,
            "single-label/precision_thr-0.50": 50.0,
            "single-label/recall_thr-0.50": 100 / 3,
            "single-label/f1-score_thr-0.50": (50.0 + 200 / 3) / 3,
        }
    )
    micro = run(
        SingleLabelMetric(thrs=(0.0, 0.5), average="micro"), score_samples(SL_SCORES, SL_TARGETS)
    )
    assert micro["single-label/precision_thr-0.50_micro"] == pytest.approx(200 / 3)
    assert micro["single-label/recall_thr-0.50_micro"] == pytest.approx(100 / 3)  # 2 of 6


def test_single_label_all_rejected_is_zero_not_nan():
    out = run(SingleLabelMetric(thrs=0.99), score_samples(SL_SCORES, SL_TARGETS))
    assert out == {
        "single-label/precision": 0.0,
        "single-label/recall": 0.0,
        "single-label/f1-score": 0.0,
    }


def test_single_label_pred_label_only_needs_num_classes():
    preds = [0, 1, 1, 1, 0, 0]
    samples = [
        {"pred_label": torch.tensor([p]), "gt_label": torch.tensor([t])}
        for p, t in zip(preds, SL_TARGETS)
    ]
    out = run(SingleLabelMetric(num_classes=3, items=("precision", "support")), samples)
    assert out == pytest.approx({"single-label/precision": 100 / 3, "single-label/support": 6})
    with pytest.raises(ValueError, match="num_classes"):
        SingleLabelMetric().process(None, samples)


def test_single_label_calculate_matches_mmpretrain_docstring_example():
    p, r, f, s = SingleLabelMetric.calculate([0, 1, 1, 3], [0, 2, 1, 3], num_classes=4)
    assert (p.item(), r.item(), f.item(), s.item()) == pytest.approx((62.5, 75.0, 200 / 3, 4))


def test_single_label_bad_arguments_are_named():
    with pytest.raises(ValueError, match="did you mean 'f1-score'"):
        SingleLabelMetric(items=("f1score",))
    with pytest.raises(ValueError, match="average"):
        SingleLabelMetric(average="weighted")


def test_metrics_read_datasamples_through_the_evaluator():
    samples = [
        DataSample().set_gt_label(t).set_pred_score(s).set_pred_label(s.argmax())
        for s, t in zip(SCORES, TARGETS)
    ]
    evaluator = Evaluator([Accuracy(topk=(1, 5)), SingleLabelMetric(items=("recall",))])
    evaluator.process(samples)
    out = evaluator.evaluate(len(samples))
    # recall per class: class 0 -> 1/3, class 2 -> 1, other classes have no samples -> 0
    assert out == pytest.approx(
        {"accuracy/top1": 50.0, "accuracy/top5": 75.0, "single-label/recall": (100 / 3 + 100) / 6}
    )


def test_confusion_matrix_counts_rows_true_columns_predicted():
    from vistra.evaluation.metrics import ConfusionMatrix

    matrix = ConfusionMatrix.calculate([0, 1, 1, 3], [0, 2, 1, 3], num_classes=4)
    expected = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert matrix.tolist() == expected
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    metric = ConfusionMatrix()
    samples = [{"pred_score": s, "gt_label": torch.tensor([g])} for s, g in zip(scores, [0, 0, 1])]
    metric.process(None, samples)
    result = metric.evaluate(3)
    assert result["confusion_matrix/result"].tolist() == [[1, 1], [1, 0]]
    with pytest.raises(ValueError, match="needs num_classes"):
        ConfusionMatrix.calculate([0, 1], [0, 1])
