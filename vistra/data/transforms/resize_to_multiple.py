"""``ResizeToMultiple`` (MMSegmentation): stretch the image so both sides are multiples of
``size_divisor``.

Each side is rounded *up* to the next multiple (``ceil(side / size_divisor) * size_divisor``,
MMCV's ``imresize_to_multiple`` at ``scale_factor=1``), so a 500x375 image becomes 512x384
at ``size_divisor=32``; a side that is a multiple already stays. The image is resized with
``interpolation`` (``'bilinear'`` when None); the label maps in ``seg_fields`` with
nearest. ``img_shape`` and ``pad_shape`` become the new ``(h, w)``; ``scale_factor`` is not
touched, as upstream. PoolFormer's test pipeline uses it after ``Resize`` so that the
network's stride-32 stages see whole feature maps.
"""

from __future__ import annotations

import math

from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import check_resize_args, imresize
from vistra.registry import TRANSFORMS


def multiple_size(size: tuple[int, int], divisor: int) -> tuple[int, int]:
    """``(w, h)`` rounded up, side by side, to multiples of ``divisor``."""
    return tuple(int(math.ceil(s / divisor)) * divisor for s in size)  # type: ignore[return-value]


@TRANSFORMS.register_module()
class ResizeToMultiple(BaseTransform):
    """Resize the image (and label maps) up to the next multiple of ``size_divisor``."""

    def __init__(self, size_divisor: int = 32, interpolation: str | None = None) -> None:
        if isinstance(size_divisor, bool) or not isinstance(size_divisor, int) or size_divisor < 1:
            raise ValueError(f"size_divisor must be an integer >= 1, got {size_divisor!r}")
        if interpolation is not None:
            check_resize_args(interpolation, "cv2")
        self.size_divisor = size_divisor
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        img = results["img"]
        h, w = img.shape[:2]
        size = multiple_size((w, h), self.size_divisor)
        img = imresize(img, size, self.interpolation or "bilinear")
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["pad_shape"] = img.shape[:2]
        # upstream resizes what ``seg_fields`` lists (LoadAnnotations adds gt_seg_map to it)
        for key in results.get("seg_fields", []):
            results[key] = imresize(results[key], size, "nearest")
        return results

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size_divisor={self.size_divisor}, "
            f"interpolation={self.interpolation})"
        )
