"""MultiLabelMetric on hand-made scores, as MMPretrain computes it."""

import pytest
import torch

from vistra.evaluation import MultiLabelMetric
from vistra.registry import METRICS

SCORES = torch.tensor([[0.9, 0.6, 0.1], [0.2, 0.5, 0.7], [0.4, 0.3, 0.8]])
TARGET = torch.tensor([[1, 0, 0], [0, 1, 1], [1, -1, 0]])  # -1: difficult, not counted


def run(**kwargs):
    metric = METRICS.build({"type": "MultiLabelMetric", **kwargs})
    metric.process(None, [{"pred_score": s, "gt_score": t} for s, t in zip(SCORES, TARGET)])
    return metric.evaluate(3)


def test_threshold_is_inclusive_and_difficult_targets_ignored():
    # thr 0.5: predicted {0,1}, {1,2}, {2}; class 0: tp 1 pred 1 gt 2; class 1: tp 1 pred 2
    # gt 1; class 2: tp 1 pred 2 gt 1
    out = run(average=None, items=("precision", "recall", "support"))
    assert out["multi-label/precision_classwise"] == pytest.approx([100.0, 50.0, 50.0])
    assert out["multi-label/recall_classwise"] == pytest.approx([50.0, 100.0, 100.0])
    assert out["multi-label/support_classwise"] == [2, 1, 1]


def test_key_names_follow_mmpretrain():
    assert list(run(thr=0.3)) == [
        f"multi-label/{k}_thr-0.30" for k in ("precision", "recall", "f1-score")
    ]
    assert list(run(topk=1, average="micro"))[0] == "multi-label/precision_top1_micro"
    assert list(run())[0] == "multi-label/precision"


def test_gt_label_indices_become_one_hot():
    metric = MultiLabelMetric(thr=0.5)
    metric.process(None, [{"pred_score": SCORES[0], "gt_label": torch.tensor([0])}])
    assert metric.results[0]["gt_score"].tolist() == [1, 0, 0]
