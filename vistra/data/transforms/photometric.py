"""Photometric transforms: ``ColorJitter``, ``RandomErasing`` (MMPretrain) and
``PhotoMetricDistortion`` (MMSegmentation), ``Lighting`` (MMPretrain: AlexNet PCA noise).
Images are uint8 BGR (``Lighting`` returns float32)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageEnhance

from vistra.data.image_io import swap_rb
from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import bgr2hsv, choose, hsv2bgr, scale_values
from vistra.registry import TRANSFORMS


def _require_uint8(img: np.ndarray, name: str) -> None:
    if img.dtype != np.uint8:
        raise TypeError(f"{name} works on uint8 images, got {img.dtype} (drop to_float32=True?)")


def _three(value: float | Sequence[float], name: str) -> tuple[float, float, float]:
    if isinstance(value, numbers.Number):
        return (float(value),) * 3
    if isinstance(value, Sequence) and len(value) == 3:
        return tuple(float(v) for v in value)  # type: ignore[return-value]
    raise ValueError(f"{name} must be a number or 3 numbers, got {value!r}")


@TRANSFORMS.register_module()
class ColorJitter(BaseTransform):
    """Randomly change brightness, contrast, saturation and hue, in random order.

    Each factor is drawn uniformly from ``[max(0, 1 - x), 1 + x]`` (hue: ``[-x, x]``,
    ``x <= 0.5``) or from an explicit ``(min, max)``. The pixel work uses Pillow's
    ``ImageEnhance`` and HSV conversion on the RGB view of the image, as MMCV's Pillow
    backend does.
    """

    def __init__(
        self,
        brightness: float | Sequence[float] = 0.0,
        contrast: float | Sequence[float] = 0.0,
        saturation: float | Sequence[float] = 0.0,
        hue: float | Sequence[float] = 0.0,
        backend: str = "pillow",
    ) -> None:
        self.brightness = self._range(brightness, "brightness")
        self.contrast = self._range(contrast, "contrast")
        self.saturation = self._range(saturation, "saturation")
        self.hue = self._range(hue, "hue", center=0.0, bound=(-0.5, 0.5))
        self.backend = choose(backend, ("pillow", "cv2"), "backend")

    @staticmethod
    def _range(
        value: float | Sequence[float],
        name: str,
        center: float = 1.0,
        bound: tuple[float, float] = (0.0, float("inf")),
    ) -> tuple[float, float] | None:
        if isinstance(value, numbers.Number):
            if value < 0:
                raise ValueError(f"ColorJitter {name}={value} must be non-negative")
            value = (center - float(value), center + float(value))
        if not (isinstance(value, Sequence) and len(value) == 2):
            raise TypeError(f"ColorJitter {name} must be a number or (min, max), got {value!r}")
        lo, hi = (float(np.clip(v, *bound)) for v in value)
        if lo > hi:
            raise ValueError(f"ColorJitter {name} range {value!r} must be (min, max)")
        return None if lo == hi == center else (lo, hi)

    def _rand_params(self) -> tuple[np.ndarray, list[float | None]]:
        order = np.random.permutation(4)
        factors = [
            None if r is None else float(np.random.uniform(r[0], r[1]))
            for r in (self.brightness, self.contrast, self.saturation, self.hue)
        ]
        return order, factors

    def transform(self, results: dict) -> dict:
        img = results["img"]
        _require_uint8(img, "ColorJitter")
        order, factors = self._rand_params()
        gray = img.ndim == 2
        pil = Image.fromarray(img if gray else swap_rb(img))
        for index in order:
            factor = factors[index]
            if factor is None or (gray and index >= 2):
                continue
            if index == 0:
                pil = ImageEnhance.Brightness(pil).enhance(factor)
            elif index == 1:
                pil = ImageEnhance.Contrast(pil).enhance(factor)
            elif index == 2:
                pil = ImageEnhance.Color(pil).enhance(factor)
            else:
                pil = _shift_hue(pil, factor)
        out = np.array(pil)
        results["img"] = out if gray else swap_rb(out)
        return results


def _shift_hue(pil: Image.Image, factor: float) -> Image.Image:
    """Rotate hue by ``factor`` turns in Pillow's 8-bit HSV (torchvision's/MMCV's rule)."""
    h, s, v = pil.convert("HSV").split()
    shifted = (np.asarray(h).astype(np.int32) + int(factor * 255)) % 256
    h = Image.fromarray(shifted.astype(np.uint8), "L")
    return Image.merge("HSV", (h, s, v)).convert("RGB")


@TRANSFORMS.register_module()
class RandomErasing(BaseTransform):
    """Erase a random rectangle with probability ``erase_prob`` (MMPretrain).

    Its area is a ``[min_area_ratio, max_area_ratio]`` fraction of the image and its
    aspect ratio log-uniform in ``aspect_range``. ``mode='const'`` fills ``fill_color``;
    ``mode='rand'`` fills uniform noise, or Gaussian noise around ``fill_color`` with
    ``fill_std`` when that is given. Colours are in the image's (BGR) channel order.
    """

    def __init__(
        self,
        erase_prob: float = 0.5,
        min_area_ratio: float = 0.02,
        max_area_ratio: float = 1 / 3,
        aspect_range: float | tuple[float, float] = (3 / 10, 10 / 3),
        mode: str = "const",
        fill_color: float | Sequence[float] = (128, 128, 128),
        fill_std: float | Sequence[float] | None = None,
    ) -> None:
        for name, value in (
            ("erase_prob", erase_prob),
            ("min_area_ratio", min_area_ratio),
            ("max_area_ratio", max_area_ratio),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"RandomErasing {name}={value} must be in [0, 1]")
        if min_area_ratio > max_area_ratio:
            raise ValueError(
                f"RandomErasing min_area_ratio {min_area_ratio} > max_area_ratio {max_area_ratio}"
            )
        if isinstance(aspect_range, numbers.Number):
            r = min(float(aspect_range), 1 / float(aspect_range))
            aspect_range = (r, 1 / r)
        if len(aspect_range) != 2 or aspect_range[0] > aspect_range[1]:
            raise ValueError(f"RandomErasing aspect_range must be (min, max), got {aspect_range!r}")
        self.erase_prob = erase_prob
        self.min_area_ratio = min_area_ratio
        self.max_area_ratio = max_area_ratio
        self.aspect_range = tuple(aspect_range)
        self.mode = choose(mode, ("const", "rand"), "mode")
        self.fill_color = _three(fill_color, "fill_color")
        self.fill_std = None if fill_std is None else _three(fill_std, "fill_std")

    def random_patch(self, img_h: int, img_w: int) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of the erased patch."""
        log_aspect = np.log(np.array(self.aspect_range, dtype=np.float32))
        aspect = np.exp(np.random.uniform(*log_aspect))
        area = img_h * img_w * np.random.uniform(self.min_area_ratio, self.max_area_ratio)
        h = min(int(round(np.sqrt(area * aspect))), img_h)
        w = min(int(round(np.sqrt(area / aspect))), img_w)
        top = np.random.randint(0, img_h - h) if img_h > h else 0
        left = np.random.randint(0, img_w - w) if img_w > w else 0
        return int(top), int(left), h, w

    def _patch(self, h: int, w: int) -> np.ndarray:
        if self.mode == "const":
            return np.broadcast_to(np.array(self.fill_color).astype(np.uint8), (h, w, 3))
        if self.fill_std is None:
            return np.random.uniform(0, 256, (h, w, 3)).astype(np.uint8)
        patch = np.random.normal(self.fill_color, self.fill_std, (h, w, 3))
        return np.clip(patch.astype(np.int32), 0, 255).astype(np.uint8)

    def transform(self, results: dict) -> dict:
        if np.random.rand() > self.erase_prob:
            return results
        img = results["img"]
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"RandomErasing expects an (H, W, 3) image, got shape {img.shape}")
        top, left, h, w = self.random_patch(*img.shape[:2])
        img = np.array(img)  # a private, writable copy (the input may be a flipped view)
        img[top : top + h, left : left + w] = self._patch(h, w)
        results["img"] = img
        return results


@TRANSFORMS.register_module()
class PhotoMetricDistortion(BaseTransform):
    """MMSegmentation's colour distortion, each step applied with probability 1/2:

    brightness (add ``U(-delta, delta)``), contrast (multiply by ``U(contrast_range)``;
    before or after the HSV steps, at random), saturation (scale S in OpenCV's HSV) and
    hue (shift H by ``randint(-hue_delta, hue_delta)`` of 180).
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    def brightness(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            delta = np.random.uniform(-self.brightness_delta, self.brightness_delta)
            return scale_values(img, beta=delta)
        return img

    def contrast(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            return scale_values(
                img, alpha=np.random.uniform(self.contrast_lower, self.contrast_upper)
            )
        return img

    def saturation(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            hsv = bgr2hsv(img)
            alpha = np.random.uniform(self.saturation_lower, self.saturation_upper)
            hsv[..., 1] = scale_values(hsv[..., 1], alpha=alpha)
            return hsv2bgr(hsv)
        return img

    def hue(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            hsv = bgr2hsv(img)
            # randint(0, 0) would raise; hue_delta=0 simply disables the shift
            delta = np.random.randint(-self.hue_delta, self.hue_delta) if self.hue_delta else 0
            hsv[..., 0] = (hsv[..., 0].astype(int) + delta) % 180
            return hsv2bgr(hsv)
        return img

    def transform(self, results: dict) -> dict:
        img = results["img"]
        _require_uint8(img, "PhotoMetricDistortion")
        img = self.brightness(img)
        contrast_first = np.random.randint(2)
        if contrast_first == 1:
            img = self.contrast(img)
        img = self.saturation(img)
        img = self.hue(img)
        if contrast_first == 0:
            img = self.contrast(img)
        results["img"] = img
        return results


@TRANSFORMS.register_module()
class Lighting(BaseTransform):
    """AlexNet's PCA lighting noise: add ``eigvec @ (alpha * eigval)`` to every pixel,
    ``alpha ~ N(0, alphastd)`` per image (numpy's global generator); the result is float32.
    ``to_rgb`` flips BGR to RGB first (the eigenvectors are then in RGB order)."""

    def __init__(
        self,
        eigval: Sequence[float],
        eigvec: Sequence[Sequence[float]],
        alphastd: float = 0.1,
        to_rgb: bool = False,
    ) -> None:
        self.eigval = np.asarray(eigval, dtype=np.float64)
        self.eigvec = np.asarray(eigvec, dtype=np.float64)
        if self.eigval.shape != (3,) or self.eigvec.shape != (3, 3):
            raise ValueError(
                "Lighting needs eigval of 3 values and eigvec of 3x3, got shapes "
                f"{self.eigval.shape} and {self.eigvec.shape}"
            )
        if alphastd < 0:
            raise ValueError(f"Lighting alphastd must be >= 0, got {alphastd!r}")
        self.alphastd, self.to_rgb = float(alphastd), to_rgb

    def transform(self, results: dict) -> dict:
        img = results["img"]
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Lighting needs an (H, W, 3) image, got shape {img.shape}")
        if self.to_rgb:
            img = img[..., ::-1]
        alpha = np.random.normal(0, self.alphastd, size=3)
        shift = self.eigvec @ (alpha * self.eigval)
        results["img"] = (img.astype(np.float64) + shift).astype(np.float32)
        return results

    def __repr__(self) -> str:
        return f"Lighting(alphastd={self.alphastd}, to_rgb={self.to_rgb})"
