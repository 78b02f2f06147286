"""Model utilities: batch augmentations, LoRA (``LoRAModel``)."""

from vistra.models.utils import batch_augments, lora
from vistra.models.utils.batch_augments import CutMix, Mixup, RandomBatchAugment

__all__ = ["CutMix", "Mixup", "RandomBatchAugment"]
