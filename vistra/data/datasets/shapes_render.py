"""Deterministic synthetic "shapes" images: numpy only, fast enough for 10k images in seconds.

One large main shape (45-80% of the image side, random position, rotation and colour)
sits on a textured background (noise blobs, stripes, gradient or checkerboard), over
zero to two small distractor shapes. The classification label is the main shape's
kind; the segmentation mask labels every pixel with ``1 + kind`` of the shape drawn
there last (0 is background).

Shapes are described in a unit frame ``(u, v)`` centred on the shape and scaled by its
circumradius, so every kind is one small boolean formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

SHAPE_NAMES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "crescent",
    "heart",
    "arrow",
)
BACKGROUNDS = ("noise", "stripes", "gradient", "checker")
MAIN_SIZE = (0.45, 0.8)  # main shape's circumscribed diameter / image side
DISTRACTOR_SIZE = (0.08, 0.16)
MIN_CONTRAST = 100.0  # Euclidean distance between shape and background colours
BG_SPREAD = 40.0  # per-channel difference between a background's two colours


def _star(u: np.ndarray, v: np.ndarray, points: int, inner: float) -> np.ndarray:
    """Regular star (or, with ``inner = cos(pi/points)``, regular polygon) of radius 1.

    Fold the angle into one half-sector; the edge runs from the outer vertex (1, 0) to the
    inner vertex at angle pi/points and radius ``inner``; a point is inside when it lies on
    the origin's side of that edge.
    """
    sector = 2 * math.pi / points
    rho = np.hypot(u, v)
    phi = np.mod(np.arctan2(v, u), sector)
    phi = np.minimum(phi, sector - phi)
    px, py = rho * np.cos(phi), rho * np.sin(phi)
    bx, by = inner * math.cos(sector / 2) - 1.0, inner * math.sin(sector / 2)
    side = bx * py - by * (px - 1.0)
    origin_side = by  # bx * 0 - by * (0 - 1)
    return side * origin_side >= 0


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = u * 1.25, -v * 1.25 + 0.25
    return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0


def _arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    shaft = (np.abs(v) <= 0.22) & (u >= -1.0) & (u <= 0.2)
    head = (u >= 0.1) & (u <= 1.0) & (np.abs(v) <= 0.65 * (1.0 - u) / 0.9)
    return shaft | head


_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: _star(u, v, 4, math.cos(math.pi / 4)),
    "triangle": lambda u, v: _star(u, v, 3, 0.5),
    "star": lambda u, v: _star(u, v, 5, 0.42),
    "cross": lambda u, v: (
        ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    ),
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.55**2),
    "hexagon": lambda u, v: _star(u, v, 6, math.cos(math.pi / 6)),
    "crescent": lambda u, v: (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.8**2),
    "heart": _heart,
    "arrow": _arrow,
}


def shape_mask(
    kind: str, size: int, center: tuple[float, float], radius: float, angle: float
) -> np.ndarray:
    """Boolean ``(size, size)`` mask of one shape (``center`` = (x, y) in pixels)."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    dx = (coords[None, :] - center[0]) / radius
    dy = (coords[:, None] - center[1]) / radius
    cos, sin = math.cos(angle), math.sin(angle)
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    return _SHAPES[kind](u, v)


# --------------------------------------------------------------------------- backgrounds
def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured ``(size, size, 3)`` float image and the colours it is made of."""
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    # Muted textures: the second colour stays within BG_SPREAD of the first, so that the
    # texture's edges are weaker than the shape's (which contrasts by MIN_CONTRAST).
    first = rng.uniform(0, 255, 3)
    second = np.clip(first + rng.uniform(-BG_SPREAD, BG_SPREAD, 3), 0, 255)
    colors = np.stack([first, second]).astype(np.float32)
    coords = np.arange(size, dtype=np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    along = math.cos(theta) * coords[None, :] + math.sin(theta) * coords[:, None]
    if kind == "noise":
        cells = max(2, size // int(rng.integers(4, 12)))
        blobs = rng.uniform(0, 1, (cells, cells, 1)).astype(np.float32)
        reps = -(-size // cells)
        weight = np.repeat(np.repeat(blobs, reps, 0), reps, 1)[:size, :size]
    elif kind == "stripes":
        period = rng.uniform(4, 16)
        weight = (np.mod(along / period, 1.0) < 0.5).astype(np.float32)[..., None]
    elif kind == "gradient":
        weight = ((along - along.min()) / max(float(np.ptp(along)), 1e-6))[..., None]
    else:
        cell = int(rng.integers(4, 17))
        ys, xs = np.divmod(np.arange(size * size), size)
        weight = (((ys // cell) + (xs // cell)) % 2).reshape(size, size, 1).astype(np.float32)
    img = colors[0] * (1 - weight) + colors[1] * weight
    return img, colors


def _contrasting_color(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A colour at least ``MIN_CONTRAST`` away from every colour in ``avoid``."""
    for _ in range(32):
        color = rng.uniform(0, 255, 3).astype(np.float32)
        if np.min(np.linalg.norm(avoid - color, axis=1)) >= MIN_CONTRAST:
            return color
    return (255.0 - avoid.mean(axis=0)).astype(np.float32)  # the mean's complement


def _draw(
    rng: np.random.Generator,
    img: np.ndarray,
    mask: np.ndarray,
    kind_id: int,
    size_range: tuple[float, float],
    avoid: np.ndarray,
) -> None:
    size = img.shape[0]
    radius = rng.uniform(*size_range) * size / 2
    margin = min(radius * 0.8, size / 2)
    center = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    inside = shape_mask(SHAPE_NAMES[kind_id], size, center, radius, rng.uniform(0, 2 * math.pi))
    img[inside] = _contrasting_color(rng, avoid)
    mask[inside] = kind_id + 1


def render_shape_sample(
    rng: np.random.Generator, img_size: int, num_classes: int
) -> tuple[np.ndarray, int, np.ndarray]:
    """One sample: ``(img, class_id, mask)``.

    ``img`` is ``(img_size, img_size, 3)`` uint8 BGR, ``class_id`` in ``[0, num_classes)``
    is the main shape's kind, ``mask`` is ``(img_size, img_size)`` uint8 with 0 for
    background and ``1 + kind`` on shape pixels. Everything is drawn from ``rng``, so the
    same generator state gives the same bytes.
    """
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"num_classes must be in [1, {len(SHAPE_NAMES)}], got {num_classes}")
    if img_size < 8:
        raise ValueError(f"img_size must be at least 8 pixels, got {img_size}")
    img, bg_colors = _background(rng, img_size)
    mask = np.zeros((img_size, img_size), np.uint8)
    for _ in range(int(rng.choice(3, p=(0.6, 0.3, 0.1)))):
        _draw(rng, img, mask, int(rng.integers(num_classes)), DISTRACTOR_SIZE, bg_colors)
    class_id = int(rng.integers(num_classes))
    _draw(rng, img, mask, class_id, MAIN_SIZE, bg_colors)
    img += rng.normal(0.0, 4.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), class_id, mask


def sample_rng(seed: int, split_id: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of a split: independent of every other sample, so
    sample i is the same whether 10 or 10,000 are generated, and splits never overlap."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(split_id), int(index)]))
