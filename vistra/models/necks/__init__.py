"""Necks between backbone and head."""

from vistra.models.necks import gap
from vistra.models.necks.gap import GlobalAveragePooling

__all__ = ["GlobalAveragePooling"]
