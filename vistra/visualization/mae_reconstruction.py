"""MAE reconstructions as one picture: original | masked | reconstruction | reconstruction
with the visible patches pasted back.

The model works on normalised images; :func:`reconstruction_panels` maps its input, its
prediction and its mask back to uint8 RGB pixels, :func:`compose_panels` puts titled
panels side by side and :func:`save_reconstruction` writes the PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .drawing import load_font

TITLES = ("original", "masked", "reconstruction", "reconstruction + visible")


def to_uint8_image(
    img: torch.Tensor,
    mean: Sequence[float] | torch.Tensor | None = None,
    std: Sequence[float] | torch.Tensor | None = None,
    bgr: bool = False,
) -> np.ndarray:
    """A normalised ``(C, H, W)`` image -> ``(H, W, 3)`` uint8 RGB (``img * std + mean``,
    clipped to 0..255; ``bgr`` flips a BGR image's channels; one channel is repeated)."""
    img = img.detach().float().cpu()
    if std is not None:
        img = img * torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
    if mean is not None:
        img = img + torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
    if bgr and img.shape[0] == 3:
        img = img.flip(0)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return img.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy().copy()


def reconstruction_panels(
    inputs: torch.Tensor,
    pred: torch.Tensor,
    mask: torch.Tensor,
    mean: Sequence[float] | torch.Tensor | None = None,
    std: Sequence[float] | torch.Tensor | None = None,
    bgr: bool = False,
) -> list[np.ndarray]:
    """The four panels of one image.

    ``inputs`` and ``pred`` are ``(C, H, W)`` in the model's normalised space, ``mask``
    ``(1, H, W)`` (or ``(H, W)``) with 1 on hidden pixels. Hidden patches of the masked
    panel show the normalisation mean (0 in normalised space), as in the MAE demo.
    """
    mask = mask.reshape(1, *inputs.shape[-2:]).to(inputs.dtype)
    pred = pred.to(inputs.dtype)
    masked = inputs * (1 - mask)
    pasted = masked + pred * mask
    return [to_uint8_image(t, mean, std, bgr) for t in (inputs, masked, pred, pasted)]


def compose_panels(
    panels: Sequence[np.ndarray],
    titles: Sequence[str] = TITLES,
    min_size: int = 160,
    gap: int = 4,
) -> np.ndarray:
    """Panels of equal size side by side on white, each enlarged (nearest neighbour, so
    patches stay sharp) to at least ``min_size`` pixels and titled above."""
    if not panels:
        raise ValueError("compose_panels needs at least one panel")
    if len(titles) != len(panels):
        raise ValueError(f"{len(panels)} panels but {len(titles)} titles")
    h, w = panels[0].shape[:2]
    if any(p.shape[:2] != (h, w) for p in panels):
        raise ValueError(f"panels differ in size: {[p.shape[:2] for p in panels]}")
    factor = max(1, -(-min_size // min(h, w)))  # ceil: integer zoom keeps patch edges
    panels = [_zoom(p, factor) for p in panels]
    h, w = panels[0].shape[:2]
    font_size = max(12, w // 14)
    title_h = font_size + 2 * gap
    canvas = Image.new(
        "RGB", (len(panels) * w + (len(panels) + 1) * gap, h + title_h + gap), "white"
    )
    draw = ImageDraw.Draw(canvas)
    font = load_font(font_size)
    for i, (panel, title) in enumerate(zip(panels, titles)):
        x = gap + i * (w + gap)
        canvas.paste(Image.fromarray(panel), (x, title_h))
        left, _, right, _ = draw.textbbox((0, 0), title, font=font)
        draw.text((x + max(0, (w - (right - left)) // 2), gap), title, fill="black", font=font)
    return np.asarray(canvas)


def _zoom(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def save_reconstruction(
    path: str | Path,
    inputs: torch.Tensor,
    pred: torch.Tensor,
    mask: torch.Tensor,
    mean: Sequence[float] | torch.Tensor | None = None,
    std: Sequence[float] | torch.Tensor | None = None,
    bgr: bool = False,
    max_images: int = 4,
) -> Path:
    """Write one row of four panels per image (at most ``max_images`` rows) to ``path``.

    ``inputs``/``pred`` are ``(B, C, H, W)`` or ``(C, H, W)``, ``mask`` ``(B, 1, H, W)``.
    """
    if inputs.dim() == 3:
        inputs, pred, mask = inputs[None], pred[None], mask.reshape(1, 1, *inputs.shape[-2:])
    rows = [
        compose_panels(reconstruction_panels(inputs[i], pred[i], mask[i], mean, std, bgr))
        for i in range(min(len(inputs), max_images))
    ]
    picture = np.concatenate(rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)
    return path


__all__ = [
    "TITLES",
    "compose_panels",
    "reconstruction_panels",
    "save_reconstruction",
    "to_uint8_image",
]
