"""Model utilities: batch augmentations."""

from vistra.models.utils import batch_augments
from vistra.models.utils.batch_augments import CutMix, Mixup, RandomBatchAugment

__all__ = ["CutMix", "Mixup", "RandomBatchAugment"]
