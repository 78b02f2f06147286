"""``SimMIMMaskGenerator``: SimMIM's random block mask (`SimMIM: A Simple Framework for
Masked Image Modeling <https://arxiv.org/abs/2111.09886>`_), as MMPretrain and MMSelfSup
1.x register it (the same arguments in both).

The image is cut into ``mask_patch_size`` blocks; ``ceil(ratio * blocks)`` of them, drawn
with ``np.random.permutation`` as upstream draws them, are masked, and the block mask is
expanded to the model's patch grid (``input_size / model_patch_size`` a side), which is
the ``(H, W)`` 0/1 integer array stored under ``results['mask']``.
"""

from __future__ import annotations

import numpy as np

from vistra.data.transforms.base import BaseTransform
from vistra.registry import TRANSFORMS

__all__ = ["SimMIMMaskGenerator"]


@TRANSFORMS.register_module()
class SimMIMMaskGenerator(BaseTransform):
    """Adds ``mask``: a ``(input_size / model_patch_size)``-square 0/1 integer array with
    1 on the patches hidden from the encoder, masked in ``mask_patch_size`` blocks."""

    def __init__(
        self,
        input_size: int = 192,
        mask_patch_size: int = 32,
        model_patch_size: int = 4,
        mask_ratio: float = 0.6,
    ) -> None:
        if input_size % mask_patch_size:
            raise ValueError(
                f"SimMIMMaskGenerator: input_size={input_size} must be a multiple of "
                f"mask_patch_size={mask_patch_size}"
            )
        if mask_patch_size % model_patch_size:
            raise ValueError(
                f"SimMIMMaskGenerator: mask_patch_size={mask_patch_size} must be a multiple "
                f"of model_patch_size={model_patch_size}"
            )
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"SimMIMMaskGenerator: mask_ratio must be in [0, 1], got {mask_ratio}")
        self.input_size = input_size
        self.mask_patch_size = mask_patch_size
        self.model_patch_size = model_patch_size
        self.mask_ratio = mask_ratio
        self.rand_size = input_size // mask_patch_size
        self.scale = mask_patch_size // model_patch_size
        self.token_count = self.rand_size**2
        self.mask_count = int(np.ceil(self.token_count * mask_ratio))

    def transform(self, results: dict) -> dict:
        # the global numpy generator, as upstream: worker seeding makes it reproducible
        chosen = np.random.permutation(self.token_count)[: self.mask_count]
        mask = np.zeros(self.token_count, dtype=int)
        mask[chosen] = 1
        mask = mask.reshape(self.rand_size, self.rand_size)
        results["mask"] = mask.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
        return results

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, "
            f"mask_patch_size={self.mask_patch_size}, model_patch_size={self.model_patch_size}, "
            f"mask_ratio={self.mask_ratio})"
        )
