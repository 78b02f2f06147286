"""The operations RandAugment and AutoAugment draw from, under MMPretrain's names.

Each op runs with probability ``prob`` and takes either a fixed magnitude argument or a
``magnitude_range`` sampled through :class:`BaseAugTransform`; signed ops flip their
magnitude with ``random_negative_prob``. The pixel maths follow MMCV's OpenCV-backed
functions (grey = OpenCV's BGR weights, truncation to uint8 where MMCV truncates);
geometry uses :func:`warp_affine`. All randomness comes from numpy's global generator,
so per-sample seeding covers it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import choose, imrotate, scale_values, warp_affine
from vistra.registry import TRANSFORMS

WARP_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


# --------------------------------------------------------------------------- pixel maths
def gray(img: np.ndarray) -> np.ndarray:
    """OpenCV's uint8 BGR -> grey (fixed-point 0.114 B + 0.587 G + 0.299 R)."""
    b, g, r = (img[..., i].astype(np.int32) for i in range(3))
    return ((b * 1868 + g * 9617 + r * 4899 + 8192) >> 14).astype(np.uint8)


def blend(img: np.ndarray, other: np.ndarray | float, factor: float, round_: bool) -> np.ndarray:
    """``img * factor + other * (1 - factor)`` clipped to uint8 (rounded or truncated)."""
    out = img.astype(np.float32) * np.float32(factor) + np.asarray(other, np.float32) * np.float32(
        1 - factor
    )
    if round_:
        out = np.rint(out)
    return np.clip(out, 0, 255).astype(np.uint8)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    return blend(img, round(float(gray(img).mean())), factor, round_=False)


def adjust_color(img: np.ndarray, factor: float) -> np.ndarray:
    return blend(img, gray(img)[..., None], factor, round_=True)


def adjust_sharpness(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the 3x3 smoothing of PIL's SMOOTH kernel ([1 1 1; 1 5 1; 1 1 1] / 13)."""
    h, w = img.shape[:2]
    pad = np.pad(
        img.astype(np.float32), [(1, 1), (1, 1)] + [(0, 0)] * (img.ndim - 2), mode="reflect"
    )
    acc = 4 * pad[1 : h + 1, 1 : w + 1]
    for dy in range(3):
        for dx in range(3):
            acc += pad[dy : dy + h, dx : dx + w]
    smooth = np.clip(np.rint(acc / 13.0), 0, 255)
    return blend(img, smooth, factor, round_=False)


def auto_contrast(img: np.ndarray) -> np.ndarray:
    """Stretch each channel's [min, max] to [0, 255]."""
    out = img.copy()
    for c in range(img.shape[2]):
        ch = img[..., c]
        lo, hi = int(ch.min()), int(ch.max())
        if lo < hi:
            scale = 255.0 / (hi - lo)
            lut = np.clip(np.arange(256) * scale - lo * scale, 0, 255).astype(np.uint8)
            out[..., c] = lut[ch]
    return out


def equalize(img: np.ndarray) -> np.ndarray:
    """Per-channel histogram equalisation (PIL's ``ImageOps.equalize`` rule)."""
    out = img.copy()
    for c in range(img.shape[2]):
        ch = img[..., c]
        hist = np.bincount(ch.ravel(), minlength=256)
        nonzero = hist[hist > 0]
        step = (int(nonzero.sum()) - int(nonzero[-1])) // 255
        if step:
            lut = (np.cumsum(hist) + step // 2) // step
            lut = np.minimum(np.concatenate([[0], lut[:-1]]), 255).astype(np.uint8)
            out[..., c] = lut[ch]
    return out


def solarize(img: np.ndarray, thr: float) -> np.ndarray:
    return np.where(img < thr, img, 255 - img).astype(img.dtype)


def posterize(img: np.ndarray, bits: int) -> np.ndarray:
    shift = 8 - bits
    return np.left_shift(np.right_shift(img, shift), shift).astype(img.dtype)


def cutout(
    img: np.ndarray, shape: int | tuple[int, int], pad_val: float | Sequence[float]
) -> np.ndarray:
    """Fill a ``shape`` = (h, w) box centred on a uniformly random point."""
    cut_h, cut_w = (shape, shape) if isinstance(shape, int) else shape
    img_h, img_w = img.shape[:2]
    y0, x0 = np.random.uniform(img_h), np.random.uniform(img_w)
    y1, x1 = int(max(0, y0 - cut_h / 2.0)), int(max(0, x0 - cut_w / 2.0))
    out = img.copy()
    out[y1 : min(img_h, y1 + cut_h), x1 : min(img_w, x1 + cut_w)] = np.asarray(pad_val, img.dtype)
    return out


# --------------------------------------------------------------------------- ops
class BaseAugTransform(BaseTransform):
    """Magnitude sampling shared by the ops (MMPretrain's ``BaseAugTransform``).

    A fixed magnitude argument (``angle``, ``magnitude``, ``thr``, ...) or a
    ``magnitude_range`` (then ``magnitude_level / total_level`` of the way through it,
    jittered by ``magnitude_std``: a positive number is a normal std, ``'inf'`` uniform
    in ``[0, level]``) must be given, not both.
    """

    def __init__(
        self,
        magnitude_level: float = 10,
        magnitude_range: tuple[float, float] | None = None,
        magnitude_std: float | str = 0.0,
        total_level: float = 10,
        prob: float = 0.5,
        random_negative_prob: float = 0.5,
    ) -> None:
        if magnitude_range is not None and len(magnitude_range) != 2:
            raise ValueError(
                f"{type(self).__name__} magnitude_range must be (a, b), got {magnitude_range!r}"
            )
        if isinstance(magnitude_std, str) and magnitude_std != "inf":
            raise ValueError(f"magnitude_std must be a number or 'inf', got {magnitude_std!r}")
        self.magnitude_level = magnitude_level
        self.magnitude_range = magnitude_range
        self.magnitude_std = magnitude_std
        self.total_level = total_level
        self.prob = prob
        self.random_negative_prob = random_negative_prob

    def _exactly_one(self, value: object, name: str) -> None:
        if (value is None) == (self.magnitude_range is None):
            raise ValueError(
                f"{type(self).__name__}: give exactly one of `{name}` and `magnitude_range`"
            )

    def random_disable(self) -> bool:
        return np.random.rand() > self.prob

    def random_magnitude(self) -> float:
        level = self.magnitude_level
        if self.magnitude_std == "inf":
            level = np.random.uniform(0, level)
        elif self.magnitude_std > 0:  # type: ignore[operator]
            level = np.clip(np.random.normal(level, self.magnitude_std), 0, self.total_level)
        lo, hi = self.magnitude_range  # type: ignore[misc]
        return float(level / self.total_level * (hi - lo) + lo)

    def random_negative(self, value: float) -> float:
        return -value if np.random.rand() < self.random_negative_prob else value

    def signed_magnitude(self, fixed: float | None) -> float:
        return self.random_negative(self.random_magnitude() if fixed is None else fixed)


class _Warp(BaseAugTransform):
    """Shear / translate: one affine matrix built from a signed magnitude."""

    def __init__(
        self,
        magnitude: float | None,
        pad_val: float | Sequence[float],
        prob: float,
        direction: str,
        random_negative_prob: float,
        interpolation: str,
        **kwargs,
    ) -> None:
        super().__init__(prob=prob, random_negative_prob=random_negative_prob, **kwargs)
        self._exactly_one(magnitude, "magnitude")
        self.magnitude = magnitude
        self.pad_val = tuple(pad_val) if isinstance(pad_val, Sequence) else pad_val
        self.direction = choose(direction, ("horizontal", "vertical"), "direction")
        self.interpolation = choose(interpolation, WARP_INTERPOLATIONS, "interpolation")

    def matrix(self, magnitude: float, h: int, w: int) -> np.ndarray:
        raise NotImplementedError

    def transform(self, results: dict) -> dict:
        if self.random_disable():
            return results
        img = results["img"]
        m = self.matrix(self.signed_magnitude(self.magnitude), *img.shape[:2])
        results["img"] = warp_affine(img, m, img.shape[1::-1], self.interpolation, self.pad_val)
        return results


@TRANSFORMS.register_module()
class Shear(_Warp):
    """Shear by ``magnitude`` (x += m * y horizontally, y += m * x vertically)."""

    def __init__(
        self,
        magnitude: float | None = None,
        pad_val: float | Sequence[float] = 128,
        prob: float = 0.5,
        direction: str = "horizontal",
        random_negative_prob: float = 0.5,
        interpolation: str = "bicubic",
        **kwargs,
    ) -> None:
        super().__init__(
            magnitude, pad_val, prob, direction, random_negative_prob, interpolation, **kwargs
        )

    def matrix(self, magnitude: float, h: int, w: int) -> np.ndarray:
        if self.direction == "horizontal":
            return np.array([[1, magnitude, 0], [0, 1, 0]], dtype=np.float64)
        return np.array([[1, 0, 0], [magnitude, 1, 0]], dtype=np.float64)


@TRANSFORMS.register_module()
class Translate(_Warp):
    """Translate by ``magnitude`` times the image width (or height)."""

    def __init__(
        self,
        magnitude: float | None = None,
        pad_val: float | Sequence[float] = 128,
        prob: float = 0.5,
        direction: str = "horizontal",
        random_negative_prob: float = 0.5,
        interpolation: str = "nearest",
        **kwargs,
    ) -> None:
        super().__init__(
            magnitude, pad_val, prob, direction, random_negative_prob, interpolation, **kwargs
        )

    def matrix(self, magnitude: float, h: int, w: int) -> np.ndarray:
        if self.direction == "horizontal":
            return np.array([[1, 0, magnitude * w], [0, 1, 0]], dtype=np.float64)
        return np.array([[1, 0, 0], [0, 1, magnitude * h]], dtype=np.float64)


@TRANSFORMS.register_module()
class Rotate(BaseAugTransform):
    """Rotate clockwise by ``angle`` degrees about ``center`` (default: image centre)."""

    def __init__(
        self,
        angle: float | None = None,
        center: tuple[float, float] | None = None,
        scale: float = 1.0,
        pad_val: float | Sequence[float] = 128,
        prob: float = 0.5,
        random_negative_prob: float = 0.5,
        interpolation: str = "nearest",
        **kwargs,
    ) -> None:
        super().__init__(prob=prob, random_negative_prob=random_negative_prob, **kwargs)
        self._exactly_one(angle, "angle")
        self.angle = angle
        self.center = center
        self.scale = scale
        self.pad_val = tuple(pad_val) if isinstance(pad_val, Sequence) else pad_val
        self.interpolation = choose(interpolation, WARP_INTERPOLATIONS, "interpolation")

    def transform(self, results: dict) -> dict:
        if self.random_disable():
            return results
        angle = self.signed_magnitude(self.angle)
        results["img"] = imrotate(
            results["img"], angle, self.center, self.scale, self.pad_val, self.interpolation
        )
        return results


class _PixelOp(BaseAugTransform):
    """An op without magnitude: ``apply(img)``."""

    def __init__(self, prob: float = 0.5, **kwargs) -> None:
        super().__init__(prob=prob, **kwargs)

    def apply(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform(self, results: dict) -> dict:
        if not self.random_disable():
            results["img"] = self.apply(results["img"])
        return results


@TRANSFORMS.register_module()
class AutoContrast(_PixelOp):
    """Stretch each channel to the full [0, 255] range."""

    def apply(self, img: np.ndarray) -> np.ndarray:
        return auto_contrast(img)


@TRANSFORMS.register_module()
class Invert(_PixelOp):
    """``255 - img``."""

    def apply(self, img: np.ndarray) -> np.ndarray:
        return 255 - img


@TRANSFORMS.register_module()
class Equalize(_PixelOp):
    """Equalise each channel's histogram."""

    def apply(self, img: np.ndarray) -> np.ndarray:
        return equalize(img)


@TRANSFORMS.register_module()
class Solarize(BaseAugTransform):
    """Invert pixels at or above ``thr``."""

    def __init__(self, thr: float | None = None, prob: float = 0.5, **kwargs) -> None:
        super().__init__(prob=prob, random_negative_prob=0.0, **kwargs)
        self._exactly_one(thr, "thr")
        self.thr = thr

    def transform(self, results: dict) -> dict:
        if not self.random_disable():
            thr = self.thr if self.thr is not None else self.random_magnitude()
            results["img"] = solarize(results["img"], thr)
        return results


@TRANSFORMS.register_module()
class SolarizeAdd(BaseAugTransform):
    """Add ``magnitude`` (capped at 255) to pixels below ``thr``."""

    def __init__(
        self, magnitude: float | None = None, thr: float = 128, prob: float = 0.5, **kwargs
    ) -> None:
        super().__init__(prob=prob, random_negative_prob=0.0, **kwargs)
        self._exactly_one(magnitude, "magnitude")
        if not isinstance(thr, (int, float)):
            raise TypeError(f"SolarizeAdd thr must be a number, got {thr!r}")
        self.magnitude = magnitude
        self.thr = thr

    def transform(self, results: dict) -> dict:
        if not self.random_disable():
            mag = self.magnitude if self.magnitude is not None else self.random_magnitude()
            img = results["img"]
            added = np.minimum(img.astype(np.float64) + mag, 255)
            results["img"] = np.where(img < self.thr, added, img).astype(img.dtype)
        return results


@TRANSFORMS.register_module()
class Posterize(BaseAugTransform):
    """Keep the ``bits`` most significant bits of each value (fractions round up)."""

    def __init__(self, bits: float | None = None, prob: float = 0.5, **kwargs) -> None:
        super().__init__(prob=prob, random_negative_prob=0.0, **kwargs)
        self._exactly_one(bits, "bits")
        if bits is not None and bits > 8:
            raise ValueError(f"Posterize bits must be <= 8, got {bits}")
        self.bits = bits

    def transform(self, results: dict) -> dict:
        if not self.random_disable():
            bits = self.bits if self.bits is not None else self.random_magnitude()
            results["img"] = posterize(results["img"], math.ceil(bits))
        return results


class _Enhance(BaseAugTransform):
    """Contrast / colour / brightness / sharpness: blend with a degenerate image by
    ``1 + magnitude``."""

    def __init__(
        self,
        magnitude: float | None = None,
        prob: float = 0.5,
        random_negative_prob: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(prob=prob, random_negative_prob=random_negative_prob, **kwargs)
        self._exactly_one(magnitude, "magnitude")
        self.magnitude = magnitude

    def apply(self, img: np.ndarray, factor: float) -> np.ndarray:
        raise NotImplementedError

    def transform(self, results: dict) -> dict:
        if not self.random_disable():
            results["img"] = self.apply(results["img"], 1 + self.signed_magnitude(self.magnitude))
        return results


@TRANSFORMS.register_module()
class Contrast(_Enhance):
    """Blend with the mean grey level."""

    def apply(self, img: np.ndarray, factor: float) -> np.ndarray:
        return adjust_contrast(img, factor)


@TRANSFORMS.register_module()
class ColorTransform(_Enhance):
    """Blend with the grey image (saturation)."""

    def apply(self, img: np.ndarray, factor: float) -> np.ndarray:
        return adjust_color(img, factor)


@TRANSFORMS.register_module()
class Brightness(_Enhance):
    """Blend with black."""

    def apply(self, img: np.ndarray, factor: float) -> np.ndarray:
        return scale_values(img, alpha=factor)


@TRANSFORMS.register_module()
class Sharpness(_Enhance):
    """Blend with a smoothed copy."""

    def apply(self, img: np.ndarray, factor: float) -> np.ndarray:
        return adjust_sharpness(img, factor)


@TRANSFORMS.register_module()
class Cutout(BaseAugTransform):
    """Fill a random ``shape`` box with ``pad_val``."""

    def __init__(
        self,
        shape: int | tuple[int, int] | None = None,
        pad_val: float | Sequence[float] = 128,
        prob: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(prob=prob, random_negative_prob=0.0, **kwargs)
        self._exactly_one(shape, "shape")
        self.shape = shape
        self.pad_val = tuple(pad_val) if isinstance(pad_val, Sequence) else pad_val

    def transform(self, results: dict) -> dict:
        if not self.random_disable():
            shape = self.shape if self.shape is not None else int(self.random_magnitude())
            results["img"] = cutout(results["img"], shape, self.pad_val)
        return results
