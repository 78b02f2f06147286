"""Metrics registered in METRICS under their OpenMMLab names."""

from vistra.evaluation.metrics.accuracy import Accuracy, SingleLabelMetric
from vistra.evaluation.metrics.iou import IoUMetric

__all__ = ["Accuracy", "SingleLabelMetric", "IoUMetric"]
