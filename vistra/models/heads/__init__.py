"""Classification heads."""

import importlib
import pkgutil

from vistra.models.heads.cls_head import ClsHead
from vistra.models.heads.linear_head import LinearClsHead

__all__ = ["ClsHead", "LinearClsHead"]

# Every module of this package registers its classes in MODELS when imported: import them
# all, so that a new family file needs no edit here (the zoo grows one file per family).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
