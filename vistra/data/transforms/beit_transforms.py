"""Transforms of BEiT-style masked image modelling (BEiT v1/v2, CAE; `BEiT
<https://arxiv.org/abs/2106.08254>`_):

- ``RandomResizedCropAndInterpolationWithTwoPic``: one random crop resized twice, to
  ``size`` for the encoder and to ``second_size`` for the tokenizer (``img`` becomes the
  list ``[image, tokenizer view]``; without ``second_size`` just the first);
- ``BEiTMaskGenerator``: a ``(h, w)`` 0/1 ``mask`` with exactly ``num_masking_patches``
  ones, grown from random rectangular blocks (BEiT's block-wise masking).

MMPretrain's versions draw from numpy's global RNG; MMSelfSup 1.x's (scope ``mmselfsup``)
from Python's ``random`` and, for the crop, use its interpolation table as published: it
passes Pillow's filter codes to OpenCV, so its ``'bicubic'`` resizes with OpenCV's
``INTER_AREA``, ``'lanczos'`` and ``'hamming'`` bilinearly, anything else bicubically.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import imresize
from vistra.registry import TRANSFORMS

__all__ = [
    "BEiTMaskGenerator",
    "RandomResizedCropAndInterpolationWithTwoPic",
    "SelfSupBEiTMaskGenerator",
    "SelfSupRandomResizedCropAndInterpolationWithTwoPic",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos")


def _size(value: int | Sequence[int] | None, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    size = (int(value), int(value)) if isinstance(value, (int, float)) else tuple(value)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return size  # type: ignore[return-value]


@TRANSFORMS.register_module()
class RandomResizedCropAndInterpolationWithTwoPic(BaseTransform):
    """Random area-and-aspect crop of ``img`` resized to ``size`` (with ``interpolation``;
    ``'random'`` picks bilinear or bicubic per image) and to ``second_size`` (with
    ``second_interpolation``). Sizes as upstream hands them to the resize: ``(w, h)``."""

    def __init__(
        self,
        size: int | Sequence[int],
        second_size: int | Sequence[int] | None = None,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: str = "bilinear",
        second_interpolation: str = "lanczos",
    ) -> None:
        self.size = _size(size, "size")
        self.second_size = _size(second_size, "second_size")
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"scale and ratio must be (min, max), got scale={scale} ratio={ratio}")
        for name, value in (("interpolation", interpolation),
                            ("second_interpolation", second_interpolation)):  # fmt: skip
            allowed = (*INTERPOLATIONS, "random") if name == "interpolation" else INTERPOLATIONS
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.interpolation: str | tuple[str, ...] = (
            ("bilinear", "bicubic") if interpolation == "random" else interpolation
        )
        self.second_interpolation = second_interpolation
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    # the random draws, overridden by MMSelfSup's variant
    def _uniform(self, low: float, high: float) -> float:
        return float(np.random.uniform(low, high))

    def _offset(self, room: int) -> int:
        return int(np.random.randint(0, room))  # upstream's exclusive bound

    def _fits(self, h: int, w: int, img_h: int, img_w: int) -> bool:
        return w < img_w and h < img_h

    def _pick(self, choices: tuple[str, ...]) -> str:
        return str(np.random.choice(choices))

    def get_params(self, img: np.ndarray) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of the crop; a central crop clamped to ``ratio`` after
        ten failed draws."""
        img_h, img_w = img.shape[:2]
        area = img_h * img_w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = self._uniform(*self.scale) * area
            aspect = math.exp(self._uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if self._fits(h, w, img_h, img_w):
                top = self._offset(img_h - h)
                left = self._offset(img_w - w)
                return top, left, h, w
        in_ratio = img_w / img_h
        if in_ratio < min(self.ratio):
            w, h = img_w, int(round(img_w / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = img_h, int(round(img_h * max(self.ratio)))
        else:
            w, h = img_w, img_h
        return (img_h - h) // 2, (img_w - w) // 2, h, w

    def _resize(self, img: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
        return imresize(img, size, interpolation=interpolation)

    def transform(self, results: dict) -> dict:
        img = results["img"]
        top, left, h, w = self.get_params(img)
        interpolation = self.interpolation
        if isinstance(interpolation, tuple):
            interpolation = self._pick(interpolation)
        crop = img[top : top + h, left : left + w]
        sample = self._resize(crop, self.size, interpolation)
        if self.second_size is None:
            results["img"] = sample
        else:
            target = self._resize(crop, self.second_size, self.second_interpolation)
            results["img"] = [sample, target]
        results["img_shape"] = sample.shape[:2]
        return results


# Pillow's filter code of each name MMSelfSup looks up, read back as OpenCV's flag of that
# number (its crop passes one to the other): the resize it really performs
_SELFSUP_RESIZE = {"bicubic": "area", "lanczos": "bilinear", "hamming": "bilinear"}


@TRANSFORMS.register_module(name="RandomResizedCropAndInterpolationWithTwoPic", scope="mmselfsup")
class SelfSupRandomResizedCropAndInterpolationWithTwoPic(
    RandomResizedCropAndInterpolationWithTwoPic
):
    """MMSelfSup 1.x's two-picture crop: Python's ``random``, inclusive crop bounds, and
    the resize its interpolation table leads to (see the module docstring)."""

    def __init__(
        self,
        size: int | Sequence[int],
        second_size: int | Sequence[int] | None = None,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: str = "bilinear",
        second_interpolation: str = "lanczos",
    ) -> None:
        super().__init__(size, second_size, scale, ratio, "bilinear", "bilinear")
        self.interpolation = (
            ("bicubic", "area")  # Pillow's BILINEAR, BICUBIC codes as OpenCV flags
            if interpolation == "random"
            else _SELFSUP_RESIZE.get(interpolation, "bicubic")
        )
        self.second_interpolation = _SELFSUP_RESIZE.get(second_interpolation, "bicubic")

    def _uniform(self, low: float, high: float) -> float:
        return random.uniform(low, high)

    def _offset(self, room: int) -> int:
        return random.randint(0, room)

    def _fits(self, h: int, w: int, img_h: int, img_w: int) -> bool:
        return w <= img_w and h <= img_h

    def _pick(self, choices: tuple[str, ...]) -> str:
        return random.choice(choices)


@TRANSFORMS.register_module()
class BEiTMaskGenerator(BaseTransform):
    """Adds ``mask``: an ``input_size`` int array with exactly ``num_masking_patches``
    ones, made of random blocks of ``min_num_patches`` to ``max_num_patches`` patches with
    aspect ratios in ``[min_aspect, max_aspect]`` (``1 / min_aspect`` by default)."""

    def __init__(
        self,
        input_size: int | tuple[int, int],
        num_masking_patches: int,
        min_num_patches: int = 4,
        max_num_patches: int | None = None,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
    ) -> None:
        if not isinstance(input_size, tuple):
            input_size = tuple(input_size) if isinstance(input_size, list) else (input_size,) * 2
        self.height, self.width = int(input_size[0]), int(input_size[1])
        self.num_patches = self.height * self.width
        if not 0 < num_masking_patches <= self.num_patches:
            raise ValueError(
                f"BEiTMaskGenerator: num_masking_patches must be in [1, {self.num_patches}] for "
                f"a {self.height}x{self.width} grid, got {num_masking_patches}"
            )
        if min(self.height, self.width) < 2:
            raise ValueError(
                f"BEiTMaskGenerator: input_size must be at least 2x2 (blocks are smaller than "
                f"the grid), got {input_size}"
            )
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))

    def _uniform(self, low: float, high: float) -> float:
        return float(np.random.uniform(low, high))

    def _randint(self, high: int) -> int:
        return int(np.random.randint(0, high))  # exclusive, as numpy

    def _mask(self, mask: np.ndarray, max_mask_patches: int) -> int:
        """Try up to ten blocks; set the first that adds new ones. Returns how many."""
        delta = 0
        for _ in range(10):
            target_area = self._uniform(self.min_num_patches, max_mask_patches)
            aspect = math.exp(self._uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < self.width and h < self.height:
                top = self._randint(self.height - h)
                left = self._randint(self.width - w)
                block = mask[top : top + h, left : left + w]
                new = h * w - int(block.sum())
                if 0 < new <= max_mask_patches:
                    block[...] = 1
                    delta += new
            if delta > 0:
                break
        return delta

    def transform(self, results: dict) -> dict:
        mask = np.zeros((self.height, self.width), dtype=int)
        count, stalled = 0, 0
        while count != self.num_masking_patches:
            budget = min(self.num_masking_patches - count, self.max_num_patches)
            delta = self._mask(mask, budget)
            count += delta
            # upstream retries forever; a grid too small for its blocks would never finish
            stalled = 0 if delta else stalled + 1
            if stalled > 1000:
                raise RuntimeError(
                    f"{type(self).__name__}: cannot place {self.num_masking_patches} masked "
                    f"patches on a {self.height}x{self.width} grid with min_num_patches="
                    f"{self.min_num_patches} (blocks must be smaller than the grid); use a "
                    "larger input_size or fewer num_masking_patches"
                )
        results["mask"] = mask
        return results


@TRANSFORMS.register_module(name="BEiTMaskGenerator", scope="mmselfsup")
class SelfSupBEiTMaskGenerator(BEiTMaskGenerator):
    """MMSelfSup 1.x's mask generator: the same masks drawn from Python's ``random``
    (``randint`` with an inclusive bound)."""

    def _uniform(self, low: float, high: float) -> float:
        return random.uniform(low, high)

    def _randint(self, high: int) -> int:
        return random.randint(0, high)

    def get_shape(self) -> tuple[int, int]:
        return self.height, self.width
