"""MAE's reconstruction target and loss: ``MAEPretrainHead``, ``PixelReconstructionLoss``
(MMPretrain) and ``MAEReconstructionLoss`` (MMSelfSup 1.x's name of the L2 case).

An image is cut into ``p x p`` patches; each patch becomes one vector of ``p * p * C``
values laid out row by row, pixel by pixel, channel last (the layout of MMPretrain's
``patchify``, which the decoder's ``decoder_pred`` weights of published checkpoints
assume). With ``norm_pix`` every patch vector is standardised by its own mean and
(unbiased) variance before it serves as the target.
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.registry import MODELS

CRITERIA = ("L1", "L2")


@MODELS.register_module()
class PixelReconstructionLoss(BaseModule):
    """L1 or L2 distance between predicted and target pixels, averaged over masked patches.

    ``pred``/``target`` are ``(B, L, D)`` patch vectors (or any shape for the plain mean);
    the per-element distance is averaged over ``D``, then over the patches where ``mask``
    is 1, and divided by ``channel`` when given. A mask with no masked patch gives 0
    (MMPretrain divides by zero there) so that a run with ``mask_ratio=0`` stays finite.
    """

    def __init__(self, criterion: str, channel: int | None = None) -> None:
        super().__init__()
        if criterion not in CRITERIA:
            raise ValueError(
                f"PixelReconstructionLoss supports criterion {CRITERIA}, got {criterion!r}"
            )
        self.criterion = criterion
        self.channel = channel if channel is not None else 1

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        # in float32: under bf16/fp16 autocast the prediction arrives in half precision
        diff = pred.float() - target.float()
        loss = diff.abs() if self.criterion == "L1" else diff.square()
        if loss.dim() == 3:
            loss = loss.mean(dim=-1)
        if mask is None:
            return loss.mean()
        mask = mask.to(loss.dtype)
        return (loss * mask).sum() / mask.sum().clamp(min=1.0) / self.channel


@MODELS.register_module()
class MAEReconstructionLoss(BaseModule):
    """MMSelfSup 1.x's MAE loss: squared error averaged over each patch's values, then over
    the masked patches (``mask`` 1). It is ``PixelReconstructionLoss(criterion='L2')``
    without ``channel``; it takes no arguments. Computed in float32 and 0 for a mask
    without a masked patch, as :class:`PixelReconstructionLoss`.
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        loss = (pred.float() - target.float()).square().mean(dim=-1)
        mask = mask.to(loss.dtype)
        return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H/p * W/p, p * p * C)``, patches in row-major order."""
    b, c, h, w = imgs.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
    x = imgs.reshape(b, c, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # b, h/p, w/p, p(row), p(col), c
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(
    x: torch.Tensor, patch_size: int, channels: int, grid: tuple[int, int] | None = None
) -> torch.Tensor:
    """Inverse of :func:`patchify`; ``grid`` is ``(H/p, W/p)`` (a square one by default)."""
    b, length, _ = x.shape
    p = patch_size
    if grid is None:
        side = int(round(length**0.5))
        if side * side != length:
            raise ValueError(f"{length} patches are not a square grid; pass grid=(h, w)")
        grid = (side, side)
    gh, gw = grid
    x = x.reshape(b, gh, gw, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, gh * p, gw * p)


@MODELS.register_module()
class MAEPretrainHead(BaseModule):
    """Builds MAE's target from the input images and applies ``loss`` on masked patches.

    ``loss`` is a loss config (``dict(type='PixelReconstructionLoss', criterion='L2')``)
    or module; ``norm_pix`` standardises each target patch (mean 0, variance 1, with
    ``1e-6`` added to the variance); ``in_channels`` is the image's channel count.
    """

    def __init__(
        self,
        loss: dict | nn.Module,
        norm_pix: bool = False,
        patch_size: int = 16,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.norm_pix = norm_pix
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.loss_module = (
            loss if isinstance(loss, nn.Module) else MODELS.build(loss, key_path="model.head.loss")
        )

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        if imgs.shape[1] != self.in_channels:
            raise ValueError(
                f"MAEPretrainHead(in_channels={self.in_channels}) got images with "
                f"{imgs.shape[1]} channels (shape {tuple(imgs.shape)})"
            )
        return patchify(imgs, self.patch_size)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        return unpatchify(x, self.patch_size, self.in_channels, grid)

    def patch_stats(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-patch mean and standard deviation (``sqrt(var + 1e-6)``), ``(B, L, 1)`` each."""
        patches = self.patchify(imgs)
        mean = patches.mean(dim=-1, keepdim=True)
        std = (patches.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
        return mean, std

    def construct_target(self, target: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, L, p*p*C)`` target patches."""
        patches = self.patchify(target)
        if self.norm_pix:
            mean, std = self.patch_stats(target)
            patches = (patches - mean) / std
        return patches

    def loss(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``pred`` ``(B, L, p*p*C)`` from the decoder, ``target`` the input images, ``mask``
        ``(B, L)`` with 1 for the patches the encoder did not see."""
        return self.loss_module(pred, self.construct_target(target), mask)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MMSelfSup 1.x calls the head itself (``head(pred, img, mask)``): the same loss."""
        return self.loss(pred, target, mask)
