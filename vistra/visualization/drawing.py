"""Pure drawing helpers on ``(H, W, 3)`` uint8 RGB numpy images.

Pillow does the pixel work (resizing, text); numpy does the blending. Nothing here touches
pyplot or other global state, so these helpers are safe inside a training process.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

IGNORE_INDEX = 255
"""Label value that segmentation datasets use for 'not annotated'; never coloured."""

READABLE_SHORT_EDGE = 224
"""Classification images are enlarged until their short edge has at least this many pixels,
so that a 32x32 CIFAR image still carries legible text."""

PALETTE_SEED = 42


def as_rgb_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` as a contiguous ``(H, W, 3)`` uint8 array; grey images get three channels."""
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array (RGB, HWC, uint8), got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 (RGB, HWC), got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{name} must have shape (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


def as_label_map(data: torch.Tensor | np.ndarray, name: str = "sem_seg") -> np.ndarray:
    """A ``(H, W)`` int64 label map from a PixelData tensor of shape ``(1, H, W)`` or ``(H, W)``."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ValueError(f"{name} must be a (1, H, W) or (H, W) label map, got shape {data.shape}")
    return data.astype(np.int64, copy=False)


@lru_cache(maxsize=16)
def load_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` pixels; the fixed-size bitmap font on old Pillow."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, AttributeError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def readable_font_size(height: int, width: int) -> int:
    return max(12, min(height, width) // 16)


def resize_image(
    image: np.ndarray,
    short_edge: int | None = None,
    scale: float | None = None,
    min_short_edge: int | None = None,
) -> np.ndarray:
    """Resize keeping the aspect ratio: to a given ``short_edge``, by ``scale``, or up to at
    least ``min_short_edge`` (never down). With none of them the image is returned as is."""
    h, w = image.shape[:2]
    if short_edge is not None:
        factor = short_edge / min(h, w)
    elif scale is not None:
        factor = float(scale)
    elif min_short_edge is not None and min(h, w) < min_short_edge:
        factor = min_short_edge / min(h, w)
    else:
        return image
    new_w, new_h = max(1, round(w * factor)), max(1, round(h * factor))
    if (new_h, new_w) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))


def resize_label_map(label_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize, so that labels stay labels."""
    if label_map.shape == (height, width):
        return label_map
    index_y = (np.arange(height) * label_map.shape[0] // height).clip(0, label_map.shape[0] - 1)
    index_x = (np.arange(width) * label_map.shape[1] // width).clip(0, label_map.shape[1] - 1)
    return label_map[index_y[:, None], index_x[None, :]]


def draw_text_block(
    image: np.ndarray,
    lines: Sequence[str],
    origin: tuple[int, int] = (0, 0),
    font_size: int | None = None,
    text_color: tuple[int, int, int] = (255, 255, 255),
    box_color: tuple[int, int, int] = (0, 0, 0),
    box_opacity: float = 0.6,
    centered: bool = False,
) -> np.ndarray:
    """Write ``lines`` on a translucent box so they read on any image.

    The box's top-left corner (or its centre, with ``centered``) goes at ``origin`` (x, y),
    moved as little as needed to keep the box inside the image.
    """
    if not lines:
        return image
    size = font_size or readable_font_size(*image.shape[:2])
    font = load_font(size)
    base = Image.fromarray(image).convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    text = "\n".join(lines)
    pad = max(2, size // 4)
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
    box_w, box_h = right + 2 * pad, bottom + 2 * pad
    x, y = origin
    if centered:
        x, y = x - box_w // 2, y - box_h // 2
    x = max(0, min(x, base.width - box_w))
    y = max(0, min(y, base.height - box_h))
    draw.rectangle((x, y, x + box_w, y + box_h), fill=(*box_color, round(255 * box_opacity)))
    draw.multiline_text((x + pad, y + pad), text, font=font, fill=(*text_color, 255))
    return np.asarray(Image.alpha_composite(base, overlay).convert("RGB"))


def generate_palette(num_colors: int, seed: int = PALETTE_SEED) -> np.ndarray:
    """``num_colors`` random but reproducible RGB colours (the same for every run)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(num_colors, 3), dtype=np.int64).astype(np.uint8)


def resolve_palette(
    palette: Sequence[Sequence[int]] | np.ndarray | None,
    classes: Sequence[str] | None,
) -> np.ndarray:
    """The dataset's palette as an ``(N, 3)`` uint8 array, or a generated one.

    Without a palette, one colour per class is generated, or 256 when the classes are
    unknown too (so every label value has a colour).
    """
    if palette is not None and len(palette) > 0:
        array = np.asarray(palette)
        if array.ndim != 2 or array.shape[1] != 3:
            raise ValueError(
                f"palette must be a list of [R, G, B] colours, got shape {array.shape}"
            )
        return array.clip(0, 255).astype(np.uint8)
    return generate_palette(len(classes) if classes else 256)


def overlay_sem_seg(
    image: np.ndarray,
    label_map: np.ndarray,
    palette: np.ndarray,
    alpha: float,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Blend each labelled pixel with its class colour: ``round((1 - alpha) * img + alpha * c)``.

    Pixels equal to ``ignore_index`` or beyond the palette keep the image's colour, so that
    unannotated regions are visibly distinct from any class.
    """
    if label_map.shape != image.shape[:2]:
        raise ValueError(
            f"label map shape {label_map.shape} does not match image shape {image.shape[:2]}"
        )
    valid = (label_map >= 0) & (label_map < len(palette)) & (label_map != ignore_index)
    out = image.copy()
    colours = palette[label_map[valid]].astype(np.float64)
    blended = (1.0 - alpha) * image[valid].astype(np.float64) + alpha * colours
    out[valid] = np.round(blended).clip(0, 255).astype(np.uint8)
    return out


def label_anchor_points(
    label_map: np.ndarray, num_labels: int, ignore_index: int = IGNORE_INDEX
) -> dict[int, tuple[int, int]]:
    """For each label present, an (x, y) point inside its region where its name can go.

    The region's pixel closest to the centroid: the centroid itself may fall outside a
    ring-shaped or split region.
    """
    points = {}
    for label in np.unique(label_map):
        label = int(label)
        if label == ignore_index or not 0 <= label < num_labels:
            continue
        ys, xs = np.nonzero(label_map == label)
        cy, cx = ys.mean(), xs.mean()
        nearest = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        points[label] = (int(xs[nearest]), int(ys[nearest]))
    return points


def draw_region_names(
    image: np.ndarray, label_map: np.ndarray, names: Sequence[str], font_size: int | None = None
) -> np.ndarray:
    """Write each present class's name at a point inside its region."""
    size = font_size or max(10, min(image.shape[:2]) // 28)
    for label, (x, y) in label_anchor_points(label_map, len(names)).items():
        image = draw_text_block(
            image, [names[label]], (x, y), font_size=size, box_opacity=0.5, centered=True
        )
    return image
