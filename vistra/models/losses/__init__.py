"""Losses: cross entropy (MMPretrain and MMSegmentation semantics), label smoothing,
Dice, focal; shared reductions in ``utils``."""

import importlib
import pkgutil

from vistra.models.losses.cross_entropy_loss import (
    CrossEntropyLoss,
    binary_cross_entropy,
    cross_entropy,
    soft_cross_entropy,
)
from vistra.models.losses.dice_loss import DiceLoss
from vistra.models.losses.focal_loss import FocalLoss
from vistra.models.losses.label_smooth_loss import LabelSmoothLoss
from vistra.models.losses.utils import convert_to_one_hot, reduce_loss, weight_reduce_loss

__all__ = [
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "LabelSmoothLoss",
    "binary_cross_entropy",
    "convert_to_one_hot",
    "cross_entropy",
    "reduce_loss",
    "soft_cross_entropy",
    "weight_reduce_loss",
]

# Every module of this package registers its classes in MODELS when imported: import them
# all, so that a new family file needs no edit here (the zoo grows one file per family).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
