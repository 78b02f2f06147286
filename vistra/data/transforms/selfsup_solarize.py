"""``RandomSolarize`` (MMSelfSup 1.x): BYOL's solarisation, applied with probability ``prob``.

Pixels at or above ``threshold`` become ``255 - value`` (MMCV's ``solarize``). The coin is
``np.random.rand() > prob`` on numpy's global generator, drawn once per call (per view
inside ``MultiView``), as MMSelfSup draws it. MMPretrain 1.2.0 has no ``RandomSolarize``;
its BYOL pipeline spells the same step ``dict(type='Solarize', thr=128, prob=...)``.
"""

from __future__ import annotations

import numpy as np

from vistra.data.transforms.augment_ops import solarize
from vistra.data.transforms.base import BaseTransform
from vistra.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomSolarize(BaseTransform):
    """Solarise ``results['img']`` at ``threshold`` with probability ``prob``."""

    def __init__(self, threshold: int = 128, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomSolarize prob must be in [0, 1], got {prob!r}")
        self.threshold = threshold
        self.prob = prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() > self.prob:
            return results
        results["img"] = solarize(results["img"], self.threshold)
        return results
