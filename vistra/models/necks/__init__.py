"""Necks between backbone and head."""

from vistra.models.necks import fpn, gap
from vistra.models.necks.gap import GlobalAveragePooling

__all__ = ["GlobalAveragePooling"]
