"""Pure image functions behind the transforms: resize, pad, crop, flip, affine warps, HSV.

Images are numpy ``(H, W)`` or ``(H, W, C)`` arrays (uint8 BGR by convention). The maths
follows MMCV's ``imresize``/``impad``/``imrotate``/... so that geometry (output sizes,
scale factors, rotation direction, pad placement) matches OpenMMLab exactly; the pixel
work is delegated to torch (``F.interpolate``), Pillow or numpy instead of OpenCV:

- ``backend='cv2'`` resizes with ``torch.nn.functional.interpolate`` without antialiasing,
  which is what OpenCV's ``INTER_LINEAR``/``INTER_CUBIC`` compute (half-pixel centres,
  a=-0.75 cubic; results within 1 grey level); ``nearest`` indexes like ``INTER_NEAREST``;
  ``area`` averages exact pixel overlaps like ``INTER_AREA`` when shrinking (bilinear when
  enlarging); ``lanczos`` uses Pillow's filter.
- ``backend='pillow'`` uses Pillow's resampling filters, as MMCV's Pillow backend does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vistra.registry import did_you_mean

CV2_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos")
PILLOW_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
    "hamming": Image.Resampling.HAMMING,
}
PAD_MODES = ("constant", "edge", "reflect", "symmetric")
FLIP_DIRECTIONS = ("horizontal", "vertical", "diagonal")


def choose(value: str, choices: Sequence[str], name: str) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise fail naming them."""
    if value not in choices:
        hint = did_you_mean(str(value), list(choices))
        raise ValueError(f"{name}={value!r} is not supported.{hint} Valid: {', '.join(choices)}")
    return value


def check_resize_args(interpolation: str, backend: str) -> None:
    """Fail early (at transform construction) on an unknown backend/interpolation pair."""
    choose(backend, ("cv2", "pillow"), "backend")
    valid = CV2_INTERPOLATIONS if backend == "cv2" else tuple(PILLOW_FILTERS)
    choose(interpolation, valid, f"interpolation (backend={backend!r})")


# --------------------------------------------------------------------------- sizes
def scale_size(size: tuple[int, int], scale: float | tuple[float, float]) -> tuple[int, int]:
    """Scale a ``(w, h)`` size, rounding half up as MMCV's ``_scale_size``."""
    w, h = size
    sx, sy = (scale, scale) if isinstance(scale, (int, float)) else scale
    return int(w * float(sx) + 0.5), int(h * float(sy) + 0.5)


def rescale_size(
    old_size: tuple[int, int], scale: float | tuple[int, int]
) -> tuple[tuple[int, int], float]:
    """MMCV's keep-ratio rule: fit ``(w, h)`` inside ``scale``.

    A number multiplies both sides. A ``(a, b)`` pair means "long edge <= max(a, b) and
    short edge <= min(a, b)", whichever order the pair is written in.
    """
    w, h = old_size
    if isinstance(scale, (int, float)):
        if scale <= 0:
            raise ValueError(f"invalid scale {scale}, must be positive")
        factor = float(scale)
    elif isinstance(scale, (tuple, list)) and len(scale) == 2:
        long_edge, short_edge = max(scale), min(scale)
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
    else:
        raise TypeError(f"scale must be a number or a (w, h) pair, got {scale!r}")
    return scale_size((w, h), factor), factor


# --------------------------------------------------------------------------- resize
def _pil_planes(img: np.ndarray) -> list[Image.Image]:
    """Split an image into Pillow images Pillow can resample losslessly."""
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
        return [Image.fromarray(np.ascontiguousarray(img), "RGB")]
    planes = [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]
    out = []
    for p in planes:
        if p.dtype == np.uint8:
            out.append(Image.fromarray(np.ascontiguousarray(p), "L"))
        elif p.dtype.kind in "iu":
            out.append(Image.fromarray(np.ascontiguousarray(p.astype(np.int32)), "I"))
        else:
            out.append(Image.fromarray(np.ascontiguousarray(p.astype(np.float32)), "F"))
    return out


def _from_pil_planes(planes: list[Image.Image], like: np.ndarray) -> np.ndarray:
    arrays = [np.array(p) for p in planes]  # writable copies (asarray views are read-only)
    if len(arrays) == 1 and (like.ndim == 2 or arrays[0].ndim == 3):
        out = arrays[0]
    else:
        out = np.stack(arrays, axis=-1)
    return out.astype(like.dtype, copy=False)


def _resize_pillow(img: np.ndarray, size: tuple[int, int], flt: int) -> np.ndarray:
    planes = [p.resize(size, flt) for p in _pil_planes(img)]
    return _from_pil_planes(planes, img)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """OpenCV INTER_NEAREST's source index of each output index: floor(i * n_in / n_out)."""
    return np.minimum((np.arange(n_out) * (n_in / n_out)).astype(np.intp), n_in - 1)


def _resize_nearest(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    ys, xs = nearest_indices(img.shape[0], h), nearest_indices(img.shape[1], w)
    return np.take(np.take(img, ys, axis=0), xs, axis=1)  # take: ~4x faster than fancy indexing


def _resize_torch(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    w, h = size
    if mode == "bilinear" and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] in (3, 4):
        return _resize_bilinear_hwc(img, size)
    # torch takes neither read-only arrays nor negative strides (even on a side of length 1)
    usable = img.flags.c_contiguous and img.flags.writeable and min(img.strides, default=0) >= 0
    x = torch.from_numpy(img if usable else np.array(img))
    x = x[None, None] if img.ndim == 2 else x.permute(2, 0, 1)[None]
    # torch's uint8 kernel is exact for bilinear only; bicubic goes through float32.
    native = x.dtype == torch.uint8 and mode == "bilinear"
    if not native:
        x = x.float()
    y = F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=False)
    y = y[0, 0] if img.ndim == 2 else y[0].permute(1, 2, 0)
    if not native and img.dtype == np.uint8:
        y = y.round_().clamp_(0, 255)
    return y.contiguous().numpy().astype(img.dtype, copy=False)


def _resize_bilinear_hwc(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 BGR(A) bilinear through torch's channels-last kernel, which reads and writes
    HWC directly: the same pixels as the planar path (checked on thousands of random
    shapes, shrinking and enlarging), ~3x faster with the layout copies that path needs."""
    w, h = size
    readable = img.flags.writeable and min(img.strides) > 0  # torch takes neither other kind
    x = torch.from_numpy(img if readable else np.array(img)).permute(2, 0, 1)[None]
    x = x.contiguous(memory_format=torch.channels_last)
    y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    # HWC-contiguous already, except where torch reads a size-1 side as planar
    return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())


def _area_axis(img: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Average exact overlaps along one axis, via prefix sums of the piecewise-constant image."""
    n_in = img.shape[axis]
    moved = np.moveaxis(img, axis, 0).astype(np.float64)
    cums = np.concatenate([np.zeros((1,) + moved.shape[1:]), np.cumsum(moved, axis=0)])
    edges = np.arange(n_out + 1) * (n_in / n_out)
    base = np.minimum(np.floor(edges).astype(np.intp), n_in - 1)
    frac = (edges - base).reshape((-1,) + (1,) * (moved.ndim - 1))
    integral = cums[base] + frac * moved[base]
    out = (integral[1:] - integral[:-1]) * (n_out / n_in)
    return np.moveaxis(out, 0, axis)


def _resize_area(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    if w > img.shape[1] or h > img.shape[0]:
        return _resize_torch(img, size, "bilinear")
    out = _area_axis(_area_axis(img, h, 0), w, 1)
    if img.dtype == np.uint8:
        out = np.clip(np.rint(out), 0, 255)
    return out.astype(img.dtype)


def imresize(
    img: np.ndarray,
    size: tuple[int, int],
    interpolation: str = "bilinear",
    backend: str = "cv2",
) -> np.ndarray:
    """Resize to ``size`` = ``(w, h)``."""
    w, h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"cannot resize an image of shape {img.shape} to (w, h)=({w}, {h})")
    check_resize_args(interpolation, backend)
    if backend == "pillow":
        return _resize_pillow(img, (w, h), PILLOW_FILTERS[interpolation])
    if interpolation == "nearest":
        return _resize_nearest(img, (w, h))
    if interpolation in ("bilinear", "bicubic"):
        return _resize_torch(img, (w, h), interpolation)
    if interpolation == "area":
        return _resize_area(img, (w, h))
    return _resize_pillow(img, (w, h), Image.Resampling.LANCZOS)


# --------------------------------------------------------------------------- flip/crop/pad
def imflip(img: np.ndarray, direction: str = "horizontal") -> np.ndarray:
    """Flip (a view, as numpy returns) horizontally, vertically or both ('diagonal')."""
    choose(direction, FLIP_DIRECTIONS, "direction")
    if direction == "horizontal":
        return img[:, ::-1]
    if direction == "vertical":
        return img[::-1]
    return img[::-1, ::-1]


def imcrop(img: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """Crop the inclusive box ``[x1, x2] x [y1, y2]``, clipped to the image (MMCV's rule)."""
    h, w = img.shape[:2]
    x1, y1 = max(0, min(int(x1), w - 1)), max(0, min(int(y1), h - 1))
    x2, y2 = max(0, min(int(x2), w - 1)), max(0, min(int(y2), h - 1))
    return img[y1 : y2 + 1, x1 : x2 + 1]


def _padding_tuple(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, (int, np.integer)):
        return (int(padding),) * 4
    if len(padding) == 2:
        return int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])
    if len(padding) == 4:
        return tuple(int(p) for p in padding)  # type: ignore[return-value]
    raise ValueError(f"padding must be an int or a 2- or 4-tuple, got {padding!r}")


def impad(
    img: np.ndarray,
    *,
    shape: tuple[int, int] | None = None,
    padding: int | Sequence[int] | None = None,
    pad_val: float | Sequence[float] = 0,
    padding_mode: str = "constant",
) -> np.ndarray:
    """Pad to ``shape`` = ``(h, w)`` (bottom/right) or by ``padding`` = (left, top, right, bottom).

    A shape smaller than the image pads nothing on that side, as MMCV does.
    """
    if (shape is None) == (padding is None):
        raise ValueError("impad needs exactly one of shape= and padding=")
    choose(padding_mode, PAD_MODES, "padding_mode")
    if shape is not None:
        padding = (0, 0, max(shape[1] - img.shape[1], 0), max(shape[0] - img.shape[0], 0))
    left, top, right, bottom = _padding_tuple(padding)  # type: ignore[arg-type]
    if min(left, top, right, bottom) < 0:
        raise ValueError(f"padding must be non-negative, got {(left, top, right, bottom)}")
    if padding_mode != "constant":
        widths = [(top, bottom), (left, right)] + [(0, 0)] * (img.ndim - 2)
        return np.pad(img, widths, mode=padding_mode)
    h, w = img.shape[:2]
    out_shape = (h + top + bottom, w + left + right) + img.shape[2:]
    fill = np.asarray(pad_val, dtype=np.float64)
    if fill.ndim and img.ndim == 3 and fill.shape[0] != img.shape[2]:
        raise ValueError(
            f"pad_val {pad_val!r} has {fill.shape[0]} values, image has {img.shape[2]} channels"
        )
    out = np.empty(out_shape, dtype=img.dtype)
    out[...] = fill.astype(img.dtype) if fill.ndim else fill
    out[top : top + h, left : left + w] = img
    return out


# --------------------------------------------------------------------------- affine warps
def rotation_matrix(center: tuple[float, float], angle: float, scale: float = 1.0) -> np.ndarray:
    """Forward 2x3 matrix rotating ``angle`` degrees *clockwise* about ``center`` = (x, y).

    This is OpenCV's ``getRotationMatrix2D(center, -angle, scale)``, the matrix MMCV's
    ``imrotate`` uses (positive angles turn clockwise on screen).
    """
    a = math.radians(-angle)
    alpha, beta = scale * math.cos(a), scale * math.sin(a)
    cx, cy = center
    return np.array(
        [
            [alpha, beta, (1 - alpha) * cx - beta * cy],
            [-beta, alpha, beta * cx + (1 - alpha) * cy],
        ]
    )


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def warp_affine(
    img: np.ndarray,
    matrix: np.ndarray,
    out_size: tuple[int, int],
    interpolation: str = "bilinear",
    border_value: float | Sequence[float] = 0,
) -> np.ndarray:
    """``dst(p) = src(M^-1 p)`` for the forward matrix ``M`` in OpenCV's pixel convention.

    ``out_size`` is ``(w, h)``. Nearest goes through Pillow (with the inverse shifted by
    half a pixel, since Pillow samples pixel centres); bilinear and bicubic through
    ``torch.grid_sample`` on ``img - border_value``, so that edge pixels blend with the
    border colour as ``cv2.warpAffine(borderMode=BORDER_CONSTANT)`` does.
    """
    choose(interpolation, ("nearest", "bilinear", "bicubic"), "interpolation")
    inv = invert_affine(matrix)
    fills = np.broadcast_to(np.asarray(border_value, dtype=np.float64), (_channels(img),))
    if interpolation == "nearest":
        return _warp_pillow(img, inv, out_size, fills)
    return _warp_torch(img, inv, out_size, interpolation, fills)


def _warp_pillow(
    img: np.ndarray, inv: np.ndarray, out_size: tuple[int, int], fills: np.ndarray
) -> np.ndarray:
    lin, shift = inv[:, :2], inv[:, 2] + 0.5 - inv[:, :2] @ np.array([0.5, 0.5])
    data = (lin[0, 0], lin[0, 1], shift[0], lin[1, 0], lin[1, 1], shift[1])
    nearest = Image.Resampling.NEAREST
    planes = _pil_planes(img)
    if len(planes) == 1 and planes[0].mode == "RGB":
        fill = tuple(int(round(v)) for v in fills)
        out = [planes[0].transform(out_size, Image.Transform.AFFINE, data, nearest, fillcolor=fill)]
    else:
        out = []
        for p, v in zip(planes, fills):
            v = float(v) if p.mode == "F" else int(round(v))
            out.append(p.transform(out_size, Image.Transform.AFFINE, data, nearest, fillcolor=v))
    return _from_pil_planes(out, img)


def _warp_torch(
    img: np.ndarray, inv: np.ndarray, out_size: tuple[int, int], mode: str, fills: np.ndarray
) -> np.ndarray:
    w_out, h_out = out_size
    h_in, w_in = img.shape[:2]
    ys, xs = torch.meshgrid(
        torch.arange(h_out, dtype=torch.float64),
        torch.arange(w_out, dtype=torch.float64),
        indexing="ij",
    )
    a = torch.from_numpy(inv)
    src_x = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
    src_y = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
    # grid_sample (align_corners=False) puts pixel i's centre at (2i + 1) / n - 1.
    grid = torch.stack([(2 * src_x + 1) / w_in - 1, (2 * src_y + 1) / h_in - 1], dim=-1)
    fill = torch.from_numpy(fills.astype(np.float32)).view(-1, 1, 1)
    x = torch.from_numpy(np.array(img, dtype=np.float32))
    x = (x[None] if img.ndim == 2 else x.permute(2, 0, 1)) - fill
    y = F.grid_sample(
        x[None], grid[None].float(), mode=mode, padding_mode="zeros", align_corners=False
    )
    y = y[0] + fill
    y = y[0] if img.ndim == 2 else y.permute(1, 2, 0)
    if img.dtype == np.uint8:
        y = y.round_().clamp_(0, 255)
    return y.contiguous().numpy().astype(img.dtype)


def _channels(img: np.ndarray) -> int:
    return 1 if img.ndim == 2 else img.shape[2]


def imrotate(
    img: np.ndarray,
    angle: float,
    center: tuple[float, float] | None = None,
    scale: float = 1.0,
    border_value: float | Sequence[float] = 0,
    interpolation: str = "bilinear",
    auto_bound: bool = False,
) -> np.ndarray:
    """Rotate clockwise by ``angle`` degrees (MMCV's ``imrotate``).

    ``auto_bound`` grows the canvas to hold the whole rotated image (then ``center``
    must be None).
    """
    if center is not None and auto_bound:
        raise ValueError("auto_bound=True requires center=None")
    h, w = img.shape[:2]
    if center is None:
        center = ((w - 1) * 0.5, (h - 1) * 0.5)
    matrix = rotation_matrix(center, angle, scale)
    if auto_bound:
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        new_w, new_h = h * sin + w * cos, h * cos + w * sin
        matrix[0, 2] += (new_w - w) * 0.5
        matrix[1, 2] += (new_h - h) * 0.5
        w, h = int(np.round(new_w)), int(np.round(new_h))
    return warp_affine(img, matrix, (w, h), interpolation, border_value)


# --------------------------------------------------------------------------- colour
_SDIV = np.zeros(256, np.int64)
_SDIV[1:] = np.rint((255 << 12) / np.arange(1, 256))
_HDIV = np.zeros(256, np.int64)
_HDIV[1:] = np.rint((180 << 12) / (6.0 * np.arange(1, 256)))


@functools.cache
def _hsv_tables() -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's S and H integer maths tabulated (64 KB + 392 KB, built on first use):
    ``S[v << 8 | diff]`` and ``H[(num + 255) << 8 | diff]``, ``num`` being the hue
    numerator (g - b, b - r + 2 diff or r - g + 4 diff: -255 .. 1275)."""
    diff = np.arange(256)[None, :]
    sat = (diff * _SDIV[np.arange(256)[:, None]] + (1 << 11)) >> 12
    num = np.arange(-255, 1276)[:, None]
    hue = (num * _HDIV[diff] + (1 << 11)) >> 12
    hue += np.where(hue < 0, 180, 0)
    # entries no colour reaches (diff > v, hue >= 256) are clipped, never read
    return np.clip(sat, 0, 255).astype(np.uint8).ravel(), np.clip(hue, 0, 255).astype(
        np.uint8
    ).ravel()


def bgr2hsv(img: np.ndarray) -> np.ndarray:
    """uint8 BGR -> HSV with H in [0, 180), S and V in [0, 255], OpenCV's integer maths
    (looked up in :func:`_hsv_tables`: the same numbers for all 2^24 colours, 2x faster
    than computing them)."""
    sat_table, hue_table = _hsv_tables()
    flat = img.reshape(-1, 3)  # contiguous planes: ~1.3x faster than strided channel views
    b, g, r = (np.ascontiguousarray(flat[:, c]) for c in range(3))
    v = np.maximum(np.maximum(b, g), r)
    diff = (v - np.minimum(np.minimum(b, g), r)).astype(np.int32)
    sat_index = v.astype(np.int32) << 8
    sat_index |= diff
    b, g, r = b.astype(np.int32), g.astype(np.int32), r.astype(np.int32)
    num = r - g + 4 * diff  # the hue numerator, by which channel is the max (r wins ties)
    np.copyto(num, b - r + 2 * diff, where=v == g)
    np.copyto(num, g - b, where=v == r)
    num += 255
    num <<= 8
    num |= diff
    out = np.empty(flat.shape, np.uint8)
    out[:, 0] = hue_table.take(num)
    out[:, 1] = sat_table.take(sat_index)
    out[:, 2] = v
    return out.reshape(img.shape)


def hsv2bgr(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`bgr2hsv` in float32, truncated to uint8 as OpenCV's vectorised path.

    Computes the closed form ``c = v - v*s*clip(min(k, 4 - k), 0, 1)`` with
    ``k = (n + h/60deg) mod 6`` (n = 5, 3, 1 for R, G, B) instead of OpenCV's sector table;
    it differs from OpenCV by one grey level on ~0.3% of values (float rounding before
    truncation). The weight takes 92 float32 values over all ``h``, so the whole float
    computation is tabulated once per ``(weight, s, v)`` (:func:`_bgr_table`, 6 MB): the
    same numbers for all 2^24 inputs, ~1.7x faster.
    """
    hue_base, table = _bgr_table()
    sv = (hsv[..., 1].astype(np.int32) << 8) | hsv[..., 2]
    out = np.empty(hsv.shape, np.uint8)
    for channel in range(3):
        index = hue_base[channel].take(hsv[..., 0])
        index += sv
        out[..., channel] = table.take(index)
    return out


def _hsv_weights(h: np.ndarray) -> list[np.ndarray]:
    """The B, G, R weights of :func:`hsv2bgr` for float32 ``h`` in sextants."""
    weights = []
    for n in (1.0, 3.0, 5.0):  # B, G, R
        k = h + np.float32(n)
        k[k >= 6] -= 6
        weight = np.minimum(k, np.float32(4) - k)
        np.clip(weight, 0, 1, out=weight)
        weights.append(weight)
    return weights


@functools.cache
def _bgr_table() -> tuple[list[np.ndarray], np.ndarray]:
    """``(hue_base, table)``: channel ``c`` of HSV ``(h, s, v)`` is
    ``table[hue_base[c][h] + (s << 8 | v)]``, evaluated with :func:`hsv2bgr`'s float32
    operations in the same order (each one exactly rounded, so element-wise the same)."""
    weights = _hsv_weights(np.arange(256).astype(np.float32) * np.float32(6.0 / 180.0))
    distinct = np.unique(np.concatenate(weights))
    hue_base = [np.searchsorted(distinct, w).astype(np.int32) << 16 for w in weights]
    s = (np.arange(256).astype(np.float32) * np.float32(1.0 / 255.0))[:, None]
    v = (np.arange(256).astype(np.float32) * np.float32(1.0 / 255.0))[None, :]
    vs = v * s
    table = v[None] - vs[None] * distinct[:, None, None]
    table *= np.float32(255.0)
    np.clip(table, 0, 255, out=table)
    return hue_base, table.astype(np.uint8).ravel()


def scale_values(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """``clip(img * alpha + beta)`` in float32, truncated back to uint8 (MMSeg's ``convert``).

    uint8 input goes through a 256-entry lookup table: the same numbers, much faster.
    """
    if img.dtype == np.uint8:
        table = np.arange(256, dtype=np.float32) * np.float32(alpha) + np.float32(beta)
        return np.clip(table, 0, 255).astype(np.uint8).take(img)  # take: 1.5x fancy indexing
    out = img.astype(np.float32) * np.float32(alpha) + np.float32(beta)
    return np.clip(out, 0, 255).astype(np.uint8)
