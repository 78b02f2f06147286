"""Pixel losses of masked-image-modelling methods that ``mae_head`` does not hold:
MMSelfSup 1.x's ``SimMIMReconstructionLoss`` (SimMIM, `SimMIM: A Simple Framework for
Masked Image Modeling <https://arxiv.org/abs/2111.09886>`_).

``PixelReconstructionLoss`` (MMPretrain's SimMIM and MaskFeat loss) lives in
``vistra.models.selfsup.mae_head``. These losses have no parameters, so no keys.
"""

from __future__ import annotations

import torch

from vistra.models.base import BaseModule
from vistra.registry import MODELS

__all__ = ["SimMIMReconstructionLoss"]


@MODELS.register_module()
class SimMIMReconstructionLoss(BaseModule):
    """L1 distance between reconstructed and input pixels on the masked pixels only.

    ``mask`` broadcasts against ``pred`` (SimMIM's ``(B, 1, H, W)`` pixel mask); the sum
    is divided by the number of masked pixels (plus ``1e-5``, as upstream, so an empty
    mask gives 0) and by ``encoder_in_channels``.
    """

    def __init__(self, encoder_in_channels: int) -> None:
        super().__init__()
        if encoder_in_channels <= 0:
            raise ValueError(
                f"SimMIMReconstructionLoss encoder_in_channels must be positive, got "
                f"{encoder_in_channels}"
            )
        self.encoder_in_channels = encoder_in_channels

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # float32: under autocast the reconstruction arrives in half precision
        distance = (target.float() - pred.float()).abs()
        mask = mask.to(distance.dtype)
        return (distance * mask).sum() / (mask.sum() + 1e-5) / self.encoder_in_channels
