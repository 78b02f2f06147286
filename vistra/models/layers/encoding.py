"""``Encoding``: the learnable residual encoder of `EncNet <https://arxiv.org/abs/1803.08904>`_
(MMSegmentation's ``mmseg.models.utils.Encoding``).

Keys: ``codewords`` ``(num_codes, channels)`` and ``scale`` ``(num_codes,)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Encoding(nn.Module):
    """``(N, C, H, W)`` features -> ``(N, num_codes, C)`` encodings.

    Each pixel ``x_i`` is softly assigned to the codewords ``d_k`` with weights
    ``softmax_k(s_k * ||x_i - d_k||^2)`` (``s_k`` = ``scale``, negative at init); the encoding of
    codeword ``k`` is the assignment-weighted sum of the residuals ``x_i - d_k``.
    """

    def __init__(self, channels: int, num_codes: int) -> None:
        super().__init__()
        self.channels, self.num_codes = channels, num_codes
        # Upstream's init (done here, at construction): codewords ~ U(-std, std) with
        # std = 1/sqrt(num_codes * channels), scale ~ U(-1, 0).
        std = 1.0 / (num_codes * channels) ** 0.5
        self.codewords = nn.Parameter(torch.empty(num_codes, channels).uniform_(-std, std))
        self.scale = nn.Parameter(torch.empty(num_codes).uniform_(-1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.size(1) != self.channels:
            raise ValueError(
                f"Encoding expects (N, {self.channels}, H, W) features, got {tuple(x.shape)}"
            )
        n = x.size(0)
        x = x.reshape(n, self.channels, -1).transpose(1, 2)  # (N, HW, C)
        residuals = x.unsqueeze(2) - self.codewords.view(1, 1, self.num_codes, self.channels)
        # (N, HW, K): scaled squared distances, softmax over the codewords
        weights = F.softmax(self.scale.view(1, 1, -1) * residuals.pow(2).sum(dim=3), dim=2)
        return (weights.unsqueeze(3) * residuals).sum(dim=1)  # (N, K, C)

    def extra_repr(self) -> str:
        return f"Nx{self.channels}xHxW => Nx{self.num_codes}x{self.channels}"
