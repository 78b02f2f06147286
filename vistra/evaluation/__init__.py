"""Evaluation: metrics, their maths, and the evaluator that runs them.

Importing this package registers every metric in METRICS and the evaluator in EVALUATOR
(the registries import it on first lookup).
"""

from vistra.evaluation import functional
from vistra.evaluation.dump import DumpResults
from vistra.evaluation.evaluator import Evaluator, build_evaluator
from vistra.evaluation.metric import BaseMetric
from vistra.evaluation.metrics import Accuracy, IoUMetric, MultiLabelMetric, SingleLabelMetric

__all__ = [
    "Accuracy",
    "BaseMetric",
    "DumpResults",
    "Evaluator",
    "IoUMetric",
    "MultiLabelMetric",
    "SingleLabelMetric",
    "build_evaluator",
    "functional",
]
