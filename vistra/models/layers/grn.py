"""Global Response Normalization (GRN), from `ConvNeXt V2
<https://arxiv.org/abs/2301.00808>`_, as MMPretrain's ``GRN``.

Each channel's spatial L2 norm, divided by its mean over the channels, rescales the
features: ``x + gamma * (x * nx) + beta``. Parameters ``gamma`` and ``beta`` start at zero,
so a fresh GRN is the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.registry import MODELS


@MODELS.register_module()
class GRN(nn.Module):
    """GRN over ``in_channels`` channels; ``data_format`` says where the channels are."""

    def __init__(self, in_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.in_channels, self.eps = in_channels, eps
        self.gamma = nn.Parameter(torch.zeros(in_channels))
        self.beta = nn.Parameter(torch.zeros(in_channels))

    def forward(self, x: torch.Tensor, data_format: str = "channel_first") -> torch.Tensor:
        if data_format == "channel_last":  # (N, H, W, C)
            gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
            nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
            return self.gamma * (x * nx) + self.beta + x
        if data_format == "channel_first":  # (N, C, H, W)
            gx = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
            nx = gx / (gx.mean(dim=1, keepdim=True) + self.eps)
            gamma, beta = self.gamma.view(1, -1, 1, 1), self.beta.view(1, -1, 1, 1)
            return gamma * (x * nx) + beta + x
        raise ValueError(
            f"data_format must be 'channel_first' or 'channel_last', got {data_format!r}"
        )
