"""EfficientNet-style crops (MMPretrain's ``EfficientNetCenterCrop`` and
``EfficientNetRandomCrop``), as the TensorFlow EfficientNet preprocessing crops.

Centre crop: a square of ``crop_size / (crop_size + crop_padding)`` of the short edge
(truncated to whole pixels), offset by ``round((side - crop) / 2)`` (Python's round, half
to even, as MMPretrain; TensorFlow's ``(side - crop + 1) // 2`` differs by a pixel on odd
margins), resized to ``crop_size`` -- small images too (MMPretrain's docstring says they
pass through; its code, which vistra matches, enlarges them).

Random crop: like ``RandomResizedCrop`` (area fraction in ``crop_ratio_range``, log-uniform
aspect ratio), but a draw is kept only when the crop covers at least ``min_covered`` of the
image; after ``max_attempts`` failed draws it falls back to the centre crop above. The
random draws come from numpy's global generator, which vistra seeds and checkpoints; the
sequence of draws is vistra's own (a crop of the same law as upstream's, not the same crop
for the same seed).
"""

from __future__ import annotations

import math

import numpy as np

from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import check_resize_args, imcrop, imresize
from vistra.data.transforms.resize import RandomResizedCrop
from vistra.registry import TRANSFORMS


def _positive_int(value: object, name: str, cls: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{cls} {name} must be a positive int (a square crop), got {value!r}")
    return value


def center_crop_box(h: int, w: int, crop_size: int, crop_padding: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the EfficientNet centre crop of an ``h x w`` image."""
    side = max(1, int(crop_size / (crop_size + crop_padding) * min(h, w)))
    return int(round((h - side) / 2)), int(round((w - side) / 2)), side


@TRANSFORMS.register_module()
class EfficientNetCenterCrop(BaseTransform):
    """Centre crop of a padded share of the short edge, resized to ``crop_size``."""

    def __init__(
        self,
        crop_size: int,
        crop_padding: int = 32,
        interpolation: str = "bicubic",
        backend: str = "cv2",
    ) -> None:
        self.crop_size = _positive_int(crop_size, "crop_size", "EfficientNetCenterCrop")
        if not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(
                f"EfficientNetCenterCrop crop_padding must be an int >= 0, got {crop_padding!r}"
            )
        check_resize_args(interpolation, backend)
        self.crop_padding, self.interpolation, self.backend = crop_padding, interpolation, backend

    def transform(self, results: dict) -> dict:
        img = results["img"]
        h, w = img.shape[:2]
        top, left, side = center_crop_box(h, w, self.crop_size, self.crop_padding)
        img = imcrop(img, left, top, left + side - 1, top + side - 1)
        size = (self.crop_size, self.crop_size)
        results["img"] = imresize(img, size, self.interpolation, self.backend)
        results["img_shape"] = results["img"].shape[:2]
        return results

    def __repr__(self) -> str:
        return (
            f"EfficientNetCenterCrop(crop_size={self.crop_size}, crop_padding={self.crop_padding}, "
            f"interpolation={self.interpolation!r}, backend={self.backend!r})"
        )


@TRANSFORMS.register_module()
class EfficientNetRandomCrop(RandomResizedCrop):
    """Random crop covering at least ``min_covered`` of the image, resized to ``scale``;
    other arguments as :class:`RandomResizedCrop` (bicubic by default)."""

    def __init__(
        self,
        scale: int,
        min_covered: float = 0.1,
        crop_padding: int = 32,
        interpolation: str = "bicubic",
        crop_ratio_range: tuple[float, float] = (0.08, 1.0),
        aspect_ratio_range: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        max_attempts: int = 10,
        backend: str = "cv2",
    ) -> None:
        _positive_int(scale, "scale", "EfficientNetRandomCrop")
        if not 0 <= min_covered <= 1:
            raise ValueError(
                f"EfficientNetRandomCrop min_covered must be in [0, 1], got {min_covered!r}"
            )
        if not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(
                f"EfficientNetRandomCrop crop_padding must be an int >= 0, got {crop_padding!r}"
            )
        super().__init__(
            scale, crop_ratio_range, aspect_ratio_range, max_attempts, interpolation, backend
        )
        self.min_covered, self.crop_padding = float(min_covered), crop_padding

    def rand_crop_params(self, h: int, w: int) -> tuple[int, int, int, int]:
        area = h * w
        log_ratio = (math.log(self.aspect_ratio_range[0]), math.log(self.aspect_ratio_range[1]))
        for _ in range(self.max_attempts):
            target_area = np.random.uniform(*self.crop_ratio_range) * area
            aspect_ratio = math.exp(np.random.uniform(*log_ratio))
            target_w = min(int(round(math.sqrt(target_area * aspect_ratio))), w)
            target_h = min(int(round(math.sqrt(target_area / aspect_ratio))), h)
            if target_w > 0 and target_h > 0 and target_w * target_h >= self.min_covered * area:
                offset_h = np.random.randint(0, h - target_h + 1)
                offset_w = np.random.randint(0, w - target_w + 1)
                return int(offset_h), int(offset_w), target_h, target_w
        top, left, side = center_crop_box(h, w, int(self.scale[0]), self.crop_padding)
        return top, left, side, side
