"""PixMIM (Liu et al., 2023, `PixMIM: Rethinking Pixel Reconstruction in Masked Image
Modeling <https://arxiv.org/abs/2303.02416>`_), as MMSelfSup 1.x's ``PixMIM``.

PixMIM is MAE (vistra/models/selfsup/mae.py, reused as is) with another target: the
decoder regresses the low-frequency part of the image, which ``LowFreqTargetGenerator``
obtains by a circular low-pass filter in the centred 2-D Fourier spectrum of the
de-normalised image. Keys: MAE's (``backbone.*``, ``neck.*``) plus the generator's fixed
``target_generator.low_pass_filter`` buffer, as upstream stores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.models.selfsup.mae import MAE, _one_view
from vistra.registry import MODELS

__all__ = ["LowFreqTargetGenerator", "PixMIM"]

# the ImageNet statistics the generator de-normalises with (fixed upstream, whatever the
# data preprocessor's mean and std)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def low_pass_filter(radius: float, size: tuple[int, int]) -> torch.Tensor:
    """``(3, h, w)``: 1 within ``radius`` of the spectrum's centre ``((h-1)/2, (w-1)/2)``."""
    h, w = size
    rows = (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) ** 2
    cols = (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) ** 2
    inside = (rows[:, None] + cols[None, :]) <= radius**2
    return inside.float().expand(3, h, w).clone()


@MODELS.register_module()
class LowFreqTargetGenerator(BaseModule):
    """Low-frequency version of normalised ``(B, 3, H, W)`` images (same shape and
    normalisation); ``img_size`` is the images' ``H`` (and ``W``): the filter is built for
    it."""

    def __init__(self, radius: int, img_size: int | tuple[int, int]) -> None:
        super().__init__()
        if radius <= 0:
            raise ValueError(f"LowFreqTargetGenerator radius must be positive, got {radius}")
        self.radius = radius
        self.img_size = tuple(img_size) if isinstance(img_size, (tuple, list)) else (
            img_size, img_size)  # fmt: skip
        if len(self.img_size) != 2:
            raise ValueError(
                f"LowFreqTargetGenerator img_size must be an int or (h, w), got {img_size!r}"
            )
        self.register_buffer("low_pass_filter", low_pass_filter(radius, self.img_size))

    @torch.no_grad()
    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        if tuple(imgs.shape[-2:]) != self.img_size:
            raise ValueError(
                f"LowFreqTargetGenerator(img_size={self.img_size}) got images of "
                f"{tuple(imgs.shape[-2:])}; set img_size to the crop size"
            )
        mean = torch.tensor(_MEAN, device=imgs.device).view(1, 3, 1, 1)
        std = torch.tensor(_STD, device=imgs.device).view(1, 3, 1, 1)
        imgs = imgs * std + mean
        spectrum = torch.fft.fftshift(torch.fft.fft2(imgs), dim=(-2, -1))
        # as upstream: the filtered spectrum is inverted without undoing the shift; the
        # magnitude is unchanged by it (a shift only multiplies by a unit phase)
        low = torch.fft.ifft2(spectrum * self.low_pass_filter).abs()
        return (low - mean) / std


@MODELS.register_module()
class PixMIM(MAE):
    """PixMIM: MAE's ``backbone``, ``neck`` and ``head`` with a ``target_generator``
    (:class:`LowFreqTargetGenerator`) whose output replaces the image as the target.
    ``mode='loss'`` gives ``{'loss': ...}``; the mask is drawn as MAE draws it."""

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        noise: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """``noise`` ``(B, L)`` fixes the mask instead of drawing it."""
        if self.target_generator is None:
            raise ValueError("PixMIM needs a target_generator (type='LowFreqTargetGenerator')")
        img = _one_view(inputs)
        # the target first, as upstream: it draws nothing, so the mask's draw is the
        # first after the seed on both sides
        target = self.target_generator(img)
        latent, mask, ids_restore = self.backbone(img, noise=noise)
        pred = self.neck(latent, ids_restore)
        return {"loss": self.head.loss(pred, target, mask)}
