"""Resizing transforms: ``Resize``, ``RandomResize`` (MMCV), ``ResizeEdge`` and
``RandomResizedCrop`` (MMPretrain).

Sizes follow MMCV: ``scale`` is ``(w, h)`` and ``scale_factor`` is ``(w_scale, h_scale)``;
``RandomResizedCrop.scale`` is ``(h, w)`` as in MMPretrain. Every key listed in
``results['seg_fields']`` (plus ``gt_seg_map``) is resized with nearest interpolation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import (
    check_resize_args,
    choose,
    imcrop,
    imresize,
    nearest_indices,
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

    def _new_size(self, results: dict) -> tuple[int, int]:
        """The output ``(w, h)``; sets ``scale``, ``scale_factor`` and ``keep_ratio``."""
        h, w = results["img"].shape[:2]
        if self.scale:
            results["scale"] = self.scale
        else:
            results["scale"] = scale_size((w, h), self.scale_factor)  # type: ignore[arg-type]
        if self.keep_ratio:
            new_size, _ = rescale_size((w, h), results["scale"])
        else:
            new_size = tuple(int(s) for s in results["scale"])
        if min(new_size) <= 0:
            shape = results["img"].shape
            raise ValueError(f"cannot resize an image of shape {shape} to (w, h)={new_size}")
        results["scale_factor"] = (new_size[0] / w, new_size[1] / h)
        results["keep_ratio"] = self.keep_ratio
        return new_size  # type: ignore[return-value]

    def transform(self, results: dict) -> dict:
        new_size = self._new_size(results)
        results["img"] = imresize(results["img"], new_size, self.interpolation, self.backend)
        results["img_shape"] = results["img"].shape[:2]
        for key in seg_keys(results):
            results[key] = imresize(results[key], new_size, "nearest", self.backend)
        return results

    def fuses_with(self, nxt: object, results: dict) -> bool:
        """Whether :meth:`transform_with_next` can run this resize and ``nxt`` together."""
        img = results.get("img")
        return (
            type(self) is Resize
            and getattr(nxt, "crops_resized", False)
            and self.backend == "cv2"
            and self.interpolation == "bilinear"
            and isinstance(img, np.ndarray)
            and img.dtype == np.uint8
            and img.ndim in (2, 3)
            and _window_matches_torch()
        )

    def transform_with_next(self, nxt: BaseTransform, results: dict) -> dict | None:
        """Resize, then the ``RandomCrop`` that follows, computing only the crop.

        The crop keeps a window of the resized image, so resizing it all is wasted work
        (on Cityscapes' ratio 0.5 .. 2, 7x the kept pixels on average). ``nxt`` draws its
        window from a :class:`ResizedView`, which computes the window's pixels exactly as
        :func:`imresize` would (nearest label maps, bilinear images): same outputs and the
        same random draws as the two transforms one after the other.
        """
        if not self.fuses_with(nxt, results):
            return NotImplemented
        view = ResizedView(results, self._new_size(results))
        return nxt.crop_resized(results, view)  # type: ignore[attr-defined]


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

    def transform_with_next(self, nxt: BaseTransform, results: dict) -> dict | None:
        """This resize and a following ``RandomCrop`` in one step (see ``Resize``'s)."""
        fuses = getattr(self.resize, "fuses_with", None)
        if fuses is None or not fuses(nxt, results):
            return NotImplemented
        results["scale"] = self._random_scale()
        self.resize.scale = results["scale"]
        return self.resize.transform_with_next(nxt, results)


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


# --------------------------------------------------------------------------- crop-only resize
# A window of a resize, computed from the source pixels it depends on. The bilinear maths is
# that of torch's uint8 kernel, which ``imresize`` runs: Pillow-style separable weights
# (triangle filter, support 1, normalised, rounded to int16 with as many fractional bits as
# the largest weight allows), a horizontal pass rounded to uint8, then a vertical one. Only
# the weights of the window's rows and columns are used, so every window pixel equals the
# full resize's (tests/data/transforms/test_resize_window.py checks it on random shapes).


@functools.lru_cache(maxsize=1)
def _window_matches_torch() -> bool:
    """Whether torch runs its vectorised uint8 bilinear kernel, the arithmetic
    :func:`bilinear_window` reproduces (its scalar fallback on CPUs without AVX2 rounds
    otherwise): without it the resize and the crop run one after the other."""
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@functools.lru_cache(maxsize=64)
def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(first, w0, w1, bits)`` for one axis: output ``i`` is
    ``(src[first[i]] * w0[i] + src[first[i] + 1] * w1[i] + 2**(bits-1)) >> bits``
    (``first[i] + 1`` clipped to the axis; ``w1[i]`` is 0 where only one tap counts)."""
    center = (n_in / n_out) * (np.arange(n_out) + 0.5)
    lo = np.maximum(np.trunc(center - 1.0 + 0.5), 0).astype(np.int64)
    n_taps = np.minimum(np.trunc(center + 1.0 + 0.5).astype(np.int64), n_in) - lo
    weights = np.zeros((n_out, 3))  # support 1 spans at most 3 pixels, 2 of them non-zero
    for j in range(3):
        x = np.abs((j + lo) - center + 0.5)
        weights[:, j] = np.where((j < n_taps) & (x < 1.0), 1.0 - x, 0.0)
    total = weights[:, 0] + weights[:, 1] + weights[:, 2]
    np.divide(weights, total[:, None], out=weights, where=total[:, None] != 0)
    bits = 0  # torch's rule: the most bits that keep round(max weight * 2) under 2**15
    while bits < 22 and int(0.5 + weights.max() * (1 << (bits + 1))) < (1 << 15):
        bits += 1
    fixed = np.trunc(0.5 + weights * (1 << bits)).astype(np.int32)  # weights are >= 0
    skip = fixed[:, 0] == 0  # the first pixel of three weighs nothing: start one later
    fixed[skip, :2] = fixed[skip, 1:]
    fixed[skip, 2] = 0
    if fixed[:, 2].any():
        raise AssertionError(f"bilinear taps {n_in}->{n_out}: more than 2 pixels weigh")
    return lo + skip, fixed[:, 0].copy(), fixed[:, 1].copy(), bits


def _bilinear_pass(src: np.ndarray, first: np.ndarray, taps: tuple, axis: int) -> np.ndarray:
    """One rounded uint8 pass along ``axis``; ``first`` indexes ``src``'s own rows/columns."""
    w0, w1, bits = taps
    shape = [1] * src.ndim
    shape[axis] = -1
    second = np.minimum(first + 1, src.shape[axis] - 1)
    acc = src.take(first, axis=axis).astype(np.int32)
    acc *= w0.reshape(shape)
    other = src.take(second, axis=axis).astype(np.int32)
    other *= w1.reshape(shape)
    acc += other
    acc += 1 << (bits - 1)
    acc >>= bits
    np.clip(acc, 0, 255, out=acc)
    return acc.astype(np.uint8)


def _taps_window(n_in: int, n_out: int, start: int, stop: int) -> tuple[np.ndarray, tuple]:
    first, w0, w1, bits = bilinear_taps(n_in, n_out)
    return first[start:stop], (w0[start:stop], w1[start:stop], bits)


def bilinear_window(
    img: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int]
) -> np.ndarray:
    """``imresize(img, size)[y1:y2, x1:x2]`` (uint8, bilinear, cv2 backend) for
    ``box = (y1, y2, x1, x2)``, from the source pixels the window depends on."""
    (w, h), (y1, y2, x1, x2) = size, box
    src_h, src_w = img.shape[:2]
    rows, row_taps = _taps_window(src_h, h, y1, y2)
    cols, col_taps = _taps_window(src_w, w, x1, x2)
    r0, r1 = int(rows[0]), min(int(rows[-1]) + 2, src_h)
    c0, c1 = int(cols[0]), min(int(cols[-1]) + 2, src_w)
    src = img[r0:r1, c0:c1]
    # a side that keeps its length is copied by torch's kernel, not filtered
    out = _bilinear_pass(src, cols - c0, col_taps, 1) if w != src_w else src[:, x1 - c0 : x2 - c0]
    if h != src_h:
        return _bilinear_pass(out, rows - r0, row_taps, 0)
    return np.ascontiguousarray(out[y1 - r0 : y2 - r0])


class ResizedView:
    """The image and label maps of ``results`` as ``Resize`` would output them at ``size``
    = (w, h), computed one window at a time (what ``RandomCrop.crop_resized`` asks for).

    Label maps are indexed as the nearest resize indexes them. The image window is
    :func:`bilinear_window`, unless the window is most of the resized image: torch's
    kernel is then faster on the whole image, and its crop is the same pixels.
    """

    FULL_RESIZE_BELOW = 3.0  # resized area / window area under which resizing all is faster

    def __init__(self, results: dict, size: tuple[int, int]) -> None:
        self.results = results
        self.size = size
        self.shape = (size[1], size[0])  # (h, w) of the resized image

    def label_window(self, key: str, box: tuple[int, int, int, int]) -> np.ndarray:
        y1, y2, x1, x2 = box
        seg = self.results[key]
        ys = nearest_indices(seg.shape[0], self.shape[0])[y1:y2]
        xs = nearest_indices(seg.shape[1], self.shape[1])[x1:x2]
        return np.take(np.take(seg, ys, axis=0), xs, axis=1)

    def image_window(self, box: tuple[int, int, int, int]) -> np.ndarray:
        y1, y2, x1, x2 = box
        img = self.results["img"]
        if self.shape[0] * self.shape[1] < self.FULL_RESIZE_BELOW * (y2 - y1) * (x2 - x1):
            return imresize(img, self.size)[y1:y2, x1:x2]
        return bilinear_window(img, self.size, box)
