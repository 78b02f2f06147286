"""Necks between backbone and head."""

import importlib
import pkgutil

from vistra.models.necks.cls_bn import ClsBatchNormNeck
from vistra.models.necks.gap import GlobalAveragePooling

__all__ = ["ClsBatchNormNeck", "GlobalAveragePooling"]

# Every module of this package registers its classes in MODELS when imported: import them
# all, so that a new family file needs no edit here (the zoo grows one file per family).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
