"""Resizing transforms: ``Resize``, ``RandomResize`` (MMCV), ``ResizeEdge`` and
``RandomResizedCrop`` (MMPretrain).

Sizes follow MMCV: ``scale`` is ``(w, h)`` and ``scale_factor`` is ``(w_scale, h_scale)``;
``RandomResizedCrop.scale`` is ``(h, w)`` as in MMPretrain. Every key listed in
``results['seg_fields']`` (plus ``gt_seg_map``) is resized with nearest interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import (
    check_resize_args,
    choose,
    imcrop,
    imresize,
    rescale_size,
    scale_size,
)
from vistra.registry import TRANSFORMS


def seg_keys(results: dict) -> list[str]:
    """Keys holding label maps that geometric transforms must move with the image."""
    keys = list(results.get("seg_fields", []))
    if "gt_seg_map" in results and "gt_seg_map" not in keys:
        keys.append("gt_seg_map")
    return [k for k in keys if results.get(k) is not None]


def _pair(value: int | float | Sequence, name: str) -> tuple:
    if isinstance(value, (int, float)):
        return (value, value)
    if isinstance(value, Sequence) and len(value) == 2:
        return tuple(value)
    raise ValueError(f"{name} must be a number or a pair, got {value!r}")


@TRANSFORMS.register_module()
class Resize(BaseTransform):
    """Resize to a fixed ``scale`` = (w, h), or by ``scale_factor``.

    With ``keep_ratio=True`` the image is rescaled as large as possible so that its long
    edge fits ``max(scale)`` and its short edge fits ``min(scale)`` (MMCV's rule). Sets
    ``img_shape``, ``scale``, ``scale_factor`` (w, h ratios actually applied) and
    ``keep_ratio``.
    """

    def __init__(
        self,
        scale: int | tuple[int, int] | None = None,
        scale_factor: float | tuple[float, float] | None = None,
        keep_ratio: bool = False,
        clip_object_border: bool = True,
        backend: str = "cv2",
        interpolation: str = "bilinear",
    ) -> None:
        if scale is None and scale_factor is None:
            raise ValueError("Resize needs scale= or scale_factor=")
        self.scale = None if scale is None else _pair(scale, "scale")
        self.scale_factor = None if scale_factor is None else _pair(scale_factor, "scale_factor")
        self.keep_ratio = keep_ratio
        self.clip_object_border = clip_object_border
        check_resize_args(interpolation, backend)
        self.backend = backend
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        img = results["img"]
        h, w = img.shape[:2]
        if self.scale:
            results["scale"] = self.scale
        else:
            results["scale"] = scale_size((w, h), self.scale_factor)  # type: ignore[arg-type]
        if self.keep_ratio:
            new_size, _ = rescale_size((w, h), results["scale"])
        else:
            new_size = tuple(int(s) for s in results["scale"])
        img = imresize(img, new_size, self.interpolation, self.backend)
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["scale_factor"] = (img.shape[1] / w, img.shape[0] / h)
        results["keep_ratio"] = self.keep_ratio
        for key in seg_keys(results):
            results[key] = imresize(
                results[key], (img.shape[1], img.shape[0]), "nearest", self.backend
            )
        return results


@TRANSFORMS.register_module()
class RandomResize(BaseTransform):
    """Resize to a random scale, then delegate to ``resize_type`` (``Resize`` by default).

    ``scale=(w, h)`` with ``ratio_range=(lo, hi)`` multiplies both sides by one ratio drawn
    uniformly from the range; ``scale=[(w1, h1), (w2, h2)]`` draws each side uniformly
    (inclusive) between the two pairs.
    """

    def __init__(
        self,
        scale: tuple[int, int] | Sequence[tuple[int, int]],
        ratio_range: tuple[float, float] | None = None,
        resize_type: str = "Resize",
        **resize_kwargs,
    ) -> None:
        self.scale = scale
        self.ratio_range = ratio_range
        if _is_pair_of_numbers(scale):
            if ratio_range is not None and len(ratio_range) != 2:
                raise ValueError(f"ratio_range must be (min, max), got {ratio_range!r}")
        elif not (isinstance(scale, Sequence) and all(_is_pair_of_numbers(s) for s in scale)):
            raise ValueError(f"scale must be (w, h) or a list of (w, h) pairs, got {scale!r}")
        self.resize_cfg = dict(type=resize_type, **resize_kwargs)
        self.resize = TRANSFORMS.build(
            {"scale": 0, **self.resize_cfg}, key_path="RandomResize.resize_type"
        )

    def _random_scale(self) -> tuple[int, int]:
        if _is_pair_of_numbers(self.scale):
            if self.ratio_range is None:
                return tuple(self.scale)  # type: ignore[return-value]
            lo, hi = self.ratio_range
            ratio = np.random.random_sample() * (hi - lo) + lo
            return int(self.scale[0] * ratio), int(self.scale[1] * ratio)
        first = [s[0] for s in self.scale]
        second = [s[1] for s in self.scale]
        edge0 = np.random.randint(min(first), max(first) + 1)
        edge1 = np.random.randint(min(second), max(second) + 1)
        return int(edge0), int(edge1)

    def transform(self, results: dict) -> dict | None:
        results["scale"] = self._random_scale()
        self.resize.scale = results["scale"]
        return self.resize(results)


def _is_pair_of_numbers(value: object) -> bool:
    return (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


@TRANSFORMS.register_module()
class ResizeEdge(BaseTransform):
    """Resize so that one edge (``'short'``, ``'long'``, ``'width'``, ``'height'``) equals
    ``scale``, keeping the aspect ratio (the other edge is truncated to an int)."""

    def __init__(
        self,
        scale: int,
        edge: str = "short",
        backend: str = "cv2",
        interpolation: str = "bilinear",
    ) -> None:
        self.edge = choose(edge, ("short", "long", "width", "height"), "edge")
        self.scale = scale
        check_resize_args(interpolation, backend)
        self.backend = backend
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        img = results["img"]
        h, w = img.shape[:2]
        by_width = (
            (self.edge == "short" and w < h)
            or (self.edge == "long" and w > h)
            or self.edge == "width"
        )
        if by_width:
            new_size = (self.scale, int(self.scale * h / w))
        else:
            new_size = (int(self.scale * w / h), self.scale)
        img = imresize(img, new_size, self.interpolation, self.backend)
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["scale"] = img.shape[:2][::-1]
        results["scale_factor"] = (img.shape[1] / w, img.shape[0] / h)
        for key in seg_keys(results):
            results[key] = imresize(results[key], new_size, "nearest", self.backend)
        return results


@TRANSFORMS.register_module()
class RandomResizedCrop(BaseTransform):
    """Crop a random area fraction and aspect ratio, then resize to ``scale`` = (h, w).

    After ``max_attempts`` failed draws it falls back to a central crop clamped to
    ``aspect_ratio_range`` (MMPretrain's and torchvision's rule).
    """

    def __init__(
        self,
        scale: int | Sequence[int],
        crop_ratio_range: tuple[float, float] = (0.08, 1.0),
        aspect_ratio_range: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        max_attempts: int = 10,
        interpolation: str = "bilinear",
        backend: str = "cv2",
    ) -> None:
        self.scale = _pair(scale, "scale")
        if min(self.scale) <= 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        if (
            crop_ratio_range[0] > crop_ratio_range[1]
            or aspect_ratio_range[0] > aspect_ratio_range[1]
        ):
            raise ValueError(
                "ranges must be (min, max); got "
                f"crop_ratio_range={crop_ratio_range} aspect_ratio_range={aspect_ratio_range}"
            )
        if not isinstance(max_attempts, int) or max_attempts < 0:
            raise ValueError(f"max_attempts must be a non-negative int, got {max_attempts!r}")
        check_resize_args(interpolation, backend)
        self.crop_ratio_range = tuple(crop_ratio_range)
        self.aspect_ratio_range = tuple(aspect_ratio_range)
        self.max_attempts = max_attempts
        self.interpolation = interpolation
        self.backend = backend

    def rand_crop_params(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(offset_h, offset_w, target_h, target_w)``, drawn from numpy's global RNG."""
        area = h * w
        log_ratio = (math.log(self.aspect_ratio_range[0]), math.log(self.aspect_ratio_range[1]))
        for _ in range(self.max_attempts):
            target_area = np.random.uniform(*self.crop_ratio_range) * area
            aspect_ratio = math.exp(np.random.uniform(*log_ratio))
            target_w = int(round(math.sqrt(target_area * aspect_ratio)))
            target_h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < target_w <= w and 0 < target_h <= h:
                offset_h = np.random.randint(0, h - target_h + 1)
                offset_w = np.random.randint(0, w - target_w + 1)
                return int(offset_h), int(offset_w), target_h, target_w
        in_ratio = w / h
        if in_ratio < min(self.aspect_ratio_range):
            target_w, target_h = w, int(round(w / min(self.aspect_ratio_range)))
        elif in_ratio > max(self.aspect_ratio_range):
            target_h, target_w = h, int(round(h * max(self.aspect_ratio_range)))
        else:
            target_w, target_h = w, h
        return (h - target_h) // 2, (w - target_w) // 2, target_h, target_w

    def transform(self, results: dict) -> dict:
        img = results["img"]
        top, left, th, tw = self.rand_crop_params(*img.shape[:2])
        out_size = (int(self.scale[1]), int(self.scale[0]))
        img = imcrop(img, left, top, left + tw - 1, top + th - 1)
        results["img"] = imresize(img, out_size, self.interpolation, self.backend)
        results["img_shape"] = results["img"].shape[:2]
        for key in seg_keys(results):
            crop = imcrop(results[key], left, top, left + tw - 1, top + th - 1)
            results[key] = imresize(crop, out_size, "nearest", self.backend)
        return results
