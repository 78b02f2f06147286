"""Evaluator: building from configs, merging metrics, refusing duplicate keys."""

import pytest
import torch

from vistra.data.structures import DataSample
from vistra.evaluation import Accuracy, Evaluator, SingleLabelMetric, build_evaluator
from vistra.evaluation.metric import BaseMetric
from vistra.registry import EVALUATOR, METRICS, RegistryError


def cls_samples():
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    return [
        DataSample().set_gt_label(t).set_pred_score(s).set_pred_label(s.argmax())
        for s, t in zip(scores, [0, 1, 1])
    ]


class SeenMetric(BaseMetric):
    """Records what process() received, to check what the evaluator hands over."""

    default_prefix = "seen"

    def process(self, data_batch, data_samples):
        self.batch = data_batch
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        return {"n": len(results)}


def test_merges_two_metrics():
    evaluator = Evaluator([{"type": "Accuracy", "topk": (1, 2)}, {"type": "SingleLabelMetric"}])
    assert [type(m) for m in evaluator.metrics] == [Accuracy, SingleLabelMetric]
    evaluator.process(cls_samples())
    out = evaluator.evaluate(3)
    # argmax: 0, 2, 1 for labels 0, 1, 1
    assert out["accuracy/top1"] == pytest.approx(200 / 3)
    assert out["accuracy/top2"] == pytest.approx(100.0)
    assert set(out) == {
        "accuracy/top1",
        "accuracy/top2",
        "single-label/precision",
        "single-label/recall",
        "single-label/f1-score",
    }


def test_duplicate_keys_name_both_metrics():
    evaluator = Evaluator([Accuracy(), Accuracy(topk=(1, 2))])
    evaluator.process(cls_samples())
    with pytest.raises(
        ValueError, match=r"'accuracy/top1'.*Accuracy\(prefix='accuracy'\).*Accuracy"
    ):
        evaluator.evaluate(3)
    renamed = Evaluator([Accuracy(), Accuracy(prefix="other")])
    renamed.process(cls_samples())
    assert set(renamed.evaluate(3)) == {"accuracy/top1", "other/top1"}


def test_samples_become_dicts_and_batch_is_passed_through():
    metric = SeenMetric()
    evaluator = Evaluator(metric)
    batch = {"inputs": [torch.zeros(1)]}
    evaluator.process(cls_samples()[:2] + [{"already": "dict"}], data_batch=batch)
    assert metric.batch is batch
    assert all(isinstance(s, dict) for s in metric.results)
    assert "pred_score" in metric.results[0] and metric.results[2] == {"already": "dict"}


def test_evaluate_cuts_to_size():
    evaluator = Evaluator(SeenMetric())
    evaluator.process(cls_samples())
    assert evaluator.evaluate(2) == {"seen/n": 2}


def test_dataset_meta_reaches_every_metric():
    evaluator = Evaluator([Accuracy(), SingleLabelMetric()])
    evaluator.dataset_meta = {"classes": ("x", "y")}
    assert evaluator.dataset_meta == {"classes": ("x", "y")}
    assert all(m.dataset_meta == {"classes": ("x", "y")} for m in evaluator.metrics)


def test_build_evaluator_accepts_dict_list_and_evaluator_dict():
    one = build_evaluator({"type": "Accuracy", "topk": 1})
    assert [type(m) for m in one.metrics] == [Accuracy]
    two = build_evaluator([{"type": "Accuracy"}, {"type": "SingleLabelMetric"}])
    assert len(two.metrics) == 2
    typed = build_evaluator({"type": "Evaluator", "metrics": [{"type": "Accuracy"}]})
    untyped = build_evaluator({"metrics": {"type": "Accuracy"}})
    assert isinstance(typed, Evaluator) and isinstance(untyped.metrics[0], Accuracy)
    assert build_evaluator(one) is one
    assert EVALUATOR.get("Evaluator") is Evaluator and METRICS.get("SingleLabelMetric")


def test_config_errors_name_the_key():
    with pytest.raises(
        RegistryError, match=r"'Accuracyy'.*'val_evaluator'.*did you mean 'Accuracy'"
    ):
        build_evaluator({"type": "Accuracyy"}, key_path="val_evaluator")
    with pytest.raises(RegistryError, match=r"'test_evaluator\[1\]\.topkk'.*'topk'"):
        build_evaluator([{"type": "Accuracy"}, {"type": "Accuracy", "topkk": 5}], "test_evaluator")
    with pytest.raises(TypeError, match="'val_evaluator'"):
        build_evaluator("Accuracy", key_path="val_evaluator")
    with pytest.raises(TypeError, match="metric config dict"):
        Evaluator([Accuracy(), 3])


def test_offline_evaluate_in_chunks():
    evaluator = Evaluator(Accuracy())
    out = evaluator.offline_evaluate([s.to_dict() for s in cls_samples()], chunk_size=2)
    assert out == pytest.approx({"accuracy/top1": 200 / 3})
    with pytest.raises(ValueError, match="3 predictions but 1 data"):
        evaluator.offline_evaluate(cls_samples(), data=[None])
