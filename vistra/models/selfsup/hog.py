"""``HOGGenerator``: MaskFeat's histogram-of-oriented-gradients target (Wei et al., 2021,
`Masked Feature Prediction for Self-Supervised Visual Pre-Training
<https://arxiv.org/abs/2112.09133>`_), as MMPretrain and MMSelfSup 1.x compute it.

Plain torch, no trainable weights: per colour channel, Sobel gradients (reflect-padded
3x3 convolutions), each pixel's gradient magnitude (optionally weighted by a Gaussian
window tiled over the image) voted into one of ``nbins`` orientation bins, summed over
``pool x pool`` cells, L2-normalised over the bins of each cell, and finally grouped so
that every ViT patch gets the histograms of the cells it covers. Like upstream, the
grouping assumes a 14x14 patch grid (224-pixel images with 16-pixel patches): the
histogram map is cut into ``width // 14``-cell squares.

Keys: the fixed buffers ``weight_x``, ``weight_y`` and ``gaussian_kernel`` (with
``gaussian_window``), stored in checkpoints as upstream stores them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vistra.models.base import BaseModule
from vistra.registry import MODELS

__all__ = ["HOGGenerator", "gaussian_kernel_2d"]

# upstream groups the cell histograms for a 14 x 14 patch grid, whatever the input size
_PATCH_GRID = 14


def gaussian_kernel_2d(size: int, std: float) -> torch.Tensor:
    """A ``size x size`` Gaussian (centred, standard deviation ``std``) summing to 1."""
    n = torch.arange(0, size).float()
    n = (n - n.mean()) / std
    kernel_1d = torch.exp(-0.5 * n**2)
    kernel = kernel_1d[:, None] * kernel_1d[None, :]
    return kernel / kernel.sum()


@MODELS.register_module()
class HOGGenerator(BaseModule):
    """HOG targets of normalised ``(B, 3, H, W)`` images: ``(B, 196, 3 * nbins * u * u)``
    with ``u = (W / pool) // 14`` (108 values per patch at 224 pixels, ``pool=8``).

    ``gaussian_window`` (0: none) is the side of the Gaussian weighting tile; the image
    side must be a multiple of it. After a call, ``out`` holds the ``(B, 3, nbins,
    H / pool, W / pool)`` cell histograms and ``unfold_size`` is ``u``.
    """

    def __init__(self, nbins: int = 9, pool: int = 8, gaussian_window: int = 16) -> None:
        super().__init__()
        if nbins <= 0 or pool <= 0 or gaussian_window < 0:
            raise ValueError(
                f"HOGGenerator needs nbins > 0, pool > 0 and gaussian_window >= 0, got "
                f"nbins={nbins}, pool={pool}, gaussian_window={gaussian_window}"
            )
        self.nbins = nbins
        self.pool = pool
        self.pi = math.pi
        sobel_x = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        weight_x = sobel_x.view(1, 1, 3, 3).repeat(3, 1, 1, 1).contiguous()
        self.register_buffer("weight_x", weight_x)
        self.register_buffer("weight_y", weight_x.transpose(2, 3).contiguous())
        self.gaussian_window = gaussian_window
        if gaussian_window:
            kernel = gaussian_kernel_2d(gaussian_window, gaussian_window // 2)
            self.register_buffer("gaussian_kernel", kernel)

    def _group_by_patch(self, hog: torch.Tensor) -> torch.Tensor:
        """``(B, 3, nbins, h, w)`` cell histograms -> ``(B, patches, values)``."""
        hog = hog.flatten(1, 2)  # B, 3 * nbins, h, w
        self.unfold_size = hog.shape[-1] // _PATCH_GRID
        if self.unfold_size == 0:
            raise ValueError(
                f"HOGGenerator: a {hog.shape[-2]}x{hog.shape[-1]} cell map is smaller than "
                f"the 14x14 patch grid it is grouped into; use images of at least "
                f"{_PATCH_GRID * self.pool} pixels (224 for ViT-B/16)"
            )
        u = self.unfold_size
        hog = hog.permute(0, 2, 3, 1).unfold(1, u, u).unfold(2, u, u)
        return hog.flatten(1, 2).flatten(2)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.h, self.w = x.size(-2), x.size(-1)
        x = F.pad(x, pad=(1, 1, 1, 1), mode="reflect")
        gx = F.conv2d(x, self.weight_x, stride=1, padding=0, groups=3)
        gy = F.conv2d(x, self.weight_y, stride=1, padding=0, groups=3)
        magnitude = torch.stack([gx, gy], dim=-1).norm(dim=-1)
        # atan2(gx, gy) in [-pi, pi] scaled to [-nbins, nbins]; bins wrap modulo nbins
        phase = torch.atan2(gx, gy) / self.pi * self.nbins

        b, c, h, w = magnitude.shape
        phase = phase.view(b, c, 1, h, w)
        magnitude = magnitude.view(b, c, 1, h, w)
        if self.gaussian_window:
            if h % self.gaussian_window:
                raise ValueError(
                    f"HOGGenerator: the image height {h} must be a multiple of "
                    f"gaussian_window={self.gaussian_window}"
                )
            repeat = h // self.gaussian_window
            magnitude = magnitude * self.gaussian_kernel.repeat(repeat, repeat)

        hist = torch.zeros((b, c, self.nbins, h, w), dtype=torch.float, device=x.device)
        hist.scatter_add_(2, phase.floor().long() % self.nbins, magnitude.float())
        hist = hist.unfold(3, self.pool, self.pool).unfold(4, self.pool, self.pool)
        hist = hist.sum(dim=[-1, -2])
        self.out = F.normalize(hist, p=2, dim=2)
        return self._group_by_patch(self.out)
