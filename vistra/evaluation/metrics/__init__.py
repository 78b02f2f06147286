"""Metrics registered in METRICS under their OpenMMLab names."""

from vistra.evaluation.metrics.accuracy import Accuracy, SingleLabelMetric
from vistra.evaluation.metrics.iou import IoUMetric
from vistra.evaluation.metrics.multi_label import MultiLabelMetric

__all__ = ["Accuracy", "SingleLabelMetric", "IoUMetric", "MultiLabelMetric"]
