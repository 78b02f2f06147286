"""Necks between backbone and head."""

from vistra.models.necks import cls_bn, fpn, gap
from vistra.models.necks.cls_bn import ClsBatchNormNeck
from vistra.models.necks.gap import GlobalAveragePooling

__all__ = ["ClsBatchNormNeck", "GlobalAveragePooling"]
