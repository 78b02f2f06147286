"""Metrics registered in METRICS under their OpenMMLab names."""

from vistra.evaluation.metrics.accuracy import Accuracy, ConfusionMatrix, SingleLabelMetric
from vistra.evaluation.metrics.average_precision import (
    AveragePrecision,
    VOCAveragePrecision,
    VOCMultiLabelMetric,
)
from vistra.evaluation.metrics.iou import IoUMetric
from vistra.evaluation.metrics.multi_label import MultiLabelMetric
from vistra.evaluation.metrics.retrieval import RetrievalAveragePrecision, RetrievalRecall

__all__ = [
    "Accuracy",
    "AveragePrecision",
    "ConfusionMatrix",
    "IoUMetric",
    "MultiLabelMetric",
    "SingleLabelMetric",
    "VOCAveragePrecision",
    "VOCMultiLabelMetric",
]
