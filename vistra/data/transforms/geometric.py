"""Crop, flip, pad and rotate transforms (MMCV / MMPretrain / MMSegmentation semantics).

Label maps listed in ``results['seg_fields']`` (and ``gt_seg_map``) follow the image:
cropped and flipped identically, padded with the segmentation pad value (255, ignored),
rotated with nearest interpolation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import (
    FLIP_DIRECTIONS,
    PAD_MODES,
    choose,
    imcrop,
    imflip,
    impad,
    imrotate,
)
from vistra.data.transforms.resize import ResizedView, seg_keys
from vistra.registry import TRANSFORMS


def _crop_all(results: dict, x1: int, y1: int, x2: int, y2: int) -> None:
    """Crop the image and every label map to the inclusive box; update ``img_shape``."""
    results["img"] = imcrop(results["img"], x1, y1, x2, y2)
    results["img_shape"] = results["img"].shape[:2]
    for key in seg_keys(results):
        results[key] = imcrop(results[key], x1, y1, x2, y2)


@TRANSFORMS.register_module()
class CenterCrop(BaseTransform):
    """Crop the centre ``crop_size`` = (w, h) (an int means square); smaller images are
    kept whole unless ``auto_pad`` pads them (with ``pad_cfg``, a ``Pad`` config) first."""

    def __init__(
        self,
        crop_size: int | tuple[int, int],
        auto_pad: bool = False,
        pad_cfg: dict | None = None,
        clip_object_border: bool = True,
    ) -> None:
        size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"crop_size must be a positive int or (w, h), got {crop_size!r}")
        self.crop_size = size
        self.auto_pad = auto_pad
        self.pad_cfg = dict(type="Pad") if pad_cfg is None else dict(pad_cfg)
        self.clip_object_border = clip_object_border
        self.pad = TRANSFORMS.build({**self.pad_cfg, "size": size}) if auto_pad else None

    def transform(self, results: dict) -> dict:
        crop_w, crop_h = self.crop_size
        if self.pad is not None:
            h, w = results["img"].shape[:2]
            if h < crop_h or w < crop_w:
                self.pad.size = (max(w, crop_w), max(h, crop_h))
                results = self.pad(results)
        h, w = results["img"].shape[:2]
        crop_h, crop_w = min(h, crop_h), min(w, crop_w)
        # Python's round() (half to even), as MMCV does.
        y1 = max(0, int(round((h - crop_h) / 2.0)))
        x1 = max(0, int(round((w - crop_w) / 2.0)))
        _crop_all(results, x1, y1, min(w, x1 + crop_w) - 1, min(h, y1 + crop_h) - 1)
        return results


@TRANSFORMS.register_module()
class RandomCrop(BaseTransform):
    """Crop a random ``crop_size`` = (h, w) window; MMPretrain's and MMSegmentation's.

    MMPretrain's options pad first: ``padding`` (int, (lr, tb) or (l, t, r, b)) always,
    ``pad_if_needed`` up to the crop size. MMSegmentation's ``cat_max_ratio < 1`` redraws
    the window (up to 10 times) while one class (``ignore_index`` excluded) covers at
    least that fraction of the crop's ``gt_seg_map``.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int],
        padding: int | Sequence[int] | None = None,
        pad_if_needed: bool = False,
        pad_val: float | Sequence[float] = 0,
        padding_mode: str = "constant",
        cat_max_ratio: float = 1.0,
        ignore_index: int = 255,
    ) -> None:
        size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"crop_size must be a positive int or (h, w), got {crop_size!r}")
        self.crop_size = size
        self.padding = padding
        self.pad_if_needed = pad_if_needed
        self.pad_val = pad_val
        self.padding_mode = choose(padding_mode, PAD_MODES, "padding_mode")
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def _pad(self, results: dict, padding: tuple[int, ...] | int | Sequence[int]) -> None:
        kw = dict(padding=padding, padding_mode=self.padding_mode)
        results["img"] = impad(results["img"], pad_val=self.pad_val, **kw)
        for key in seg_keys(results):
            results[key] = impad(results[key], pad_val=self.ignore_index, **kw)

    def crop_bbox(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(y1, y2, x1, x2)`` (exclusive ends) of a random window."""
        target_h, target_w = min(self.crop_size[0], h), min(self.crop_size[1], w)
        offset_h = np.random.randint(0, h - target_h + 1)
        offset_w = np.random.randint(0, w - target_w + 1)
        return int(offset_h), int(offset_h + target_h), int(offset_w), int(offset_w + target_w)

    def _window(self, results: dict, shape: tuple[int, int], labels) -> tuple[int, int, int, int]:
        """A window of an image of ``shape``; ``labels(box)`` is ``gt_seg_map``'s crop."""
        box = self.crop_bbox(*shape)
        if self.cat_max_ratio >= 1.0 or results.get("gt_seg_map") is None:
            return box
        for _ in range(10):
            counts = _label_counts(labels(box), self.ignore_index)
            if len(counts) > 1 and np.max(counts) / np.sum(counts) < self.cat_max_ratio:
                break
            box = self.crop_bbox(*shape)
        return box

    @property
    def crops_resized(self) -> bool:
        """Whether :meth:`crop_resized` applies (a pad would need the whole resized image)."""
        plain = type(self).transform is RandomCrop.transform  # a subclass may crop otherwise
        return plain and self.padding is None and not self.pad_if_needed

    def crop_resized(self, results: dict, view: ResizedView) -> dict:
        """Crop an image that ``Resize`` has not resized yet: only the window is computed
        (the same draws and pixels as cropping the resized image; see ``Resize``)."""
        y1, y2, x1, x2 = self._window(
            results, view.shape, lambda box: view.label_window("gt_seg_map", box)
        )
        box = (y1, y2, x1, x2)
        for key in seg_keys(results):
            results[key] = view.label_window(key, box)
        results["img"] = view.image_window(box)
        results["img_shape"] = results["img"].shape[:2]
        return results

    def transform(self, results: dict) -> dict:
        if self.padding is not None:
            self._pad(results, self.padding)
        if self.pad_if_needed:
            h, w = results["img"].shape[:2]
            h_pad = math.ceil(max(0, self.crop_size[0] - h) / 2)
            w_pad = math.ceil(max(0, self.crop_size[1] - w) / 2)
            self._pad(results, (w_pad, h_pad, w_pad, h_pad))
        seg = results.get("gt_seg_map")
        shape = results["img"].shape[:2]
        y1, y2, x1, x2 = self._window(results, shape, lambda b: seg[b[0] : b[1], b[2] : b[3]])
        _crop_all(results, x1, y1, x2 - 1, y2 - 1)
        return results


def _label_counts(seg: np.ndarray, ignore_index: int) -> np.ndarray:
    """Pixel counts of the labels present, ``ignore_index`` excluded (bincount for uint8)."""
    if seg.dtype == np.uint8:
        counts = np.bincount(seg.ravel(), minlength=256)
        if 0 <= ignore_index < 256:
            counts[ignore_index] = 0
        return counts[counts > 0]
    labels, counts = np.unique(seg, return_counts=True)
    return counts[labels != ignore_index]


@TRANSFORMS.register_module()
class RandomFlip(BaseTransform):
    """Flip with probability ``prob`` (MMCV).

    ``direction`` may be a list; a float ``prob`` is then shared equally between the
    directions, and a list ``prob`` gives one probability per direction. Sets ``flip``
    and ``flip_direction`` (None when not flipped).
    """

    def __init__(
        self,
        prob: float | Sequence[float] | None = None,
        direction: str | Sequence[str] = "horizontal",
        swap_seg_labels: Sequence | None = None,
    ) -> None:
        directions = [direction] if isinstance(direction, str) else list(direction)
        for d in directions:
            choose(d, FLIP_DIRECTIONS, "direction")
        if isinstance(prob, (list, tuple)):
            if len(prob) != len(directions):
                raise ValueError(f"prob {prob!r} needs one value per direction {directions!r}")
            probs = [float(p) for p in prob]
        elif isinstance(prob, (int, float)) and not isinstance(prob, bool):
            probs = [float(prob) / len(directions)] * len(directions)
        else:
            raise ValueError(f"RandomFlip prob must be a float or a list of floats, got {prob!r}")
        if min(probs) < 0 or sum(probs) > 1 + 1e-9:
            raise ValueError(f"RandomFlip probabilities must be >= 0 and sum to <= 1, got {prob!r}")
        self.prob = prob
        self.direction = direction
        self.swap_seg_labels = swap_seg_labels
        self._choices = [*directions, None]
        self._probs = [*probs, max(0.0, 1.0 - sum(probs))]
        self._cdf: list[float] | None = None

    def _choose_direction(self) -> str | None:
        # np.random.choice(n, p=probs) without its per-call validation (~10x the cost): the
        # same one uniform draw from the global RNG against the same normalised cdf.
        if self._cdf is None:
            cdf = np.cumsum(np.asarray(self._probs, dtype=np.float64))
            self._cdf = (cdf / cdf[-1]).tolist()
        return self._choices[bisect.bisect_right(self._cdf, np.random.random_sample())]

    def transform(self, results: dict) -> dict:
        direction = self._choose_direction()
        results["flip"] = direction is not None
        results["flip_direction"] = direction
        if direction is None:
            return results
        results["img"] = imflip(results["img"], direction)
        for key in seg_keys(results):
            results[key] = self._flip_seg(results[key], direction)
        results["swap_seg_labels"] = self.swap_seg_labels
        return results

    def _flip_seg(self, seg: np.ndarray, direction: str) -> np.ndarray:
        seg = imflip(seg, direction)
        if self.swap_seg_labels:
            out = seg.copy()
            for a, b in self.swap_seg_labels:
                out[seg == a], out[seg == b] = b, a
            seg = out
        return seg


@TRANSFORMS.register_module()
class Pad(BaseTransform):
    """Pad bottom/right to ``size`` = (w, h), to a multiple of ``size_divisor``, or to a
    square (MMCV). ``pad_val`` is a number or ``dict(img=..., seg=...)`` (seg default 255).
    Sets ``pad_shape``, ``pad_fixed_size``, ``pad_size_divisor`` and ``img_shape``."""

    def __init__(
        self,
        size: tuple[int, int] | None = None,
        size_divisor: int | None = None,
        pad_to_square: bool = False,
        pad_val: float | dict = dict(img=0, seg=255),  # noqa: B006 - MMCV's signature; never mutated
        padding_mode: str = "constant",
    ) -> None:
        if pad_to_square:
            if size is not None:
                raise ValueError("Pad: size must be None when pad_to_square=True")
        elif (size is None) == (size_divisor is None):
            raise ValueError(
                "Pad needs exactly one of size= and size_divisor= (or pad_to_square=True)"
            )
        self.size = None if size is None else tuple(size)
        self.size_divisor = size_divisor
        self.pad_to_square = pad_to_square
        self.pad_val = dict(pad_val) if isinstance(pad_val, dict) else dict(img=pad_val, seg=255)
        self.padding_mode = choose(padding_mode, PAD_MODES, "padding_mode")

    def _target_shape(self, h: int, w: int) -> tuple[int, int]:
        if self.pad_to_square:
            h = w = max(h, w)
        if self.size_divisor is not None:
            d = self.size_divisor
            return int(np.ceil(h / d)) * d, int(np.ceil(w / d)) * d
        if self.size is not None:
            return self.size[1], self.size[0]
        return h, w

    def transform(self, results: dict) -> dict:
        img = results["img"]
        shape = self._target_shape(*img.shape[:2])
        img_val = self.pad_val.get("img", 0)
        results["img"] = impad(img, shape=shape, pad_val=img_val, padding_mode=self.padding_mode)
        results["pad_shape"] = results["img"].shape
        results["pad_fixed_size"] = self.size
        results["pad_size_divisor"] = self.size_divisor
        results["img_shape"] = results["img"].shape[:2]
        seg_val = self.pad_val.get("seg", 255)
        for key in seg_keys(results):
            results[key] = impad(
                results[key], shape=shape, pad_val=seg_val, padding_mode=self.padding_mode
            )
        return results


@TRANSFORMS.register_module()
class RandomRotate(BaseTransform):
    """Rotate by a random angle with probability ``prob`` (MMSegmentation).

    ``degree`` is a bound (angle in ``[-degree, degree]``) or a ``(min, max)`` range;
    positive angles turn clockwise. The image is padded with ``pad_val`` (bilinear), label
    maps with ``seg_pad_val`` (nearest).
    """

    def __init__(
        self,
        prob: float,
        degree: float | tuple[float, float],
        pad_val: float = 0,
        seg_pad_val: int = 255,
        center: tuple[float, float] | None = None,
        auto_bound: bool = False,
    ) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f"RandomRotate prob must be in [0, 1], got {prob}")
        if isinstance(degree, (int, float)):
            if degree <= 0:
                raise ValueError(f"RandomRotate degree must be positive, got {degree}")
            degree = (-degree, degree)
        elif len(degree) != 2:
            raise ValueError(f"RandomRotate degree must be a number or (min, max), got {degree!r}")
        self.prob = prob
        self.degree = tuple(degree)
        self.pal_val = pad_val  # MMSegmentation's attribute name
        self.seg_pad_val = seg_pad_val
        self.center = center
        self.auto_bound = auto_bound

    def transform(self, results: dict) -> dict:
        rotate = np.random.rand() < self.prob
        angle = np.random.uniform(min(*self.degree), max(*self.degree))
        if not rotate:
            return results
        kw = dict(center=self.center, auto_bound=self.auto_bound)
        results["img"] = imrotate(results["img"], angle, border_value=self.pal_val, **kw)
        results["img_shape"] = results["img"].shape[:2]
        for key in seg_keys(results):
            results[key] = imrotate(
                results[key], angle, border_value=self.seg_pad_val, interpolation="nearest", **kw
            )
        return results
