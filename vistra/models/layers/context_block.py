"""``ContextBlock`` (`GCNet <https://arxiv.org/abs/1904.11492>`_), MMCV's global context
block.

Keys: ``conv_mask`` (``pooling_type='att'``), ``channel_add_conv.{0,1,3}`` and/or
``channel_mul_conv.{0,1,3}`` (conv, ``LayerNorm([planes, 1, 1])``, ReLU, conv).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.init import constant_init, kaiming_init

POOLING_TYPES = ("avg", "att")
FUSION_TYPES = ("channel_add", "channel_mul")


def _transform(channels: int, planes: int) -> nn.Sequential:
    """The bottleneck that maps the pooled context to a per-channel term."""
    return nn.Sequential(
        nn.Conv2d(channels, planes, kernel_size=1),
        nn.LayerNorm([planes, 1, 1]),
        nn.ReLU(inplace=True),
        nn.Conv2d(planes, channels, kernel_size=1),
    )


class ContextBlock(nn.Module):
    """Pool one global context vector (softmax attention over the pixels with ``'att'``,
    plain average with ``'avg'``), then fuse it into every pixel: multiplied through a
    sigmoid (``'channel_mul'``) and/or added (``'channel_add'``). The bottleneck has
    ``int(in_channels * ratio)`` channels."""

    _abbr_ = "context_block"

    def __init__(
        self,
        in_channels: int,
        ratio: float,
        pooling_type: str = "att",
        fusion_types: Sequence[str] = ("channel_add",),
    ) -> None:
        super().__init__()
        if pooling_type not in POOLING_TYPES:
            raise ValueError(f"pooling_type={pooling_type!r}: valid: {list(POOLING_TYPES)}")
        if not isinstance(fusion_types, (list, tuple)) or not fusion_types:
            raise ValueError(
                f"fusion_types must be a non-empty list/tuple of {list(FUSION_TYPES)}, got "
                f"{fusion_types!r}"
            )
        bad = [f for f in fusion_types if f not in FUSION_TYPES]
        if bad:
            raise ValueError(f"fusion_types {bad}: valid: {list(FUSION_TYPES)}")
        self.in_channels, self.ratio = in_channels, ratio
        self.planes = int(in_channels * ratio)
        self.pooling_type, self.fusion_types = pooling_type, tuple(fusion_types)
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(in_channels, 1, kernel_size=1)
            self.softmax = nn.Softmax(dim=2)
        else:
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.channel_add_conv = (
            _transform(in_channels, self.planes) if "channel_add" in fusion_types else None
        )
        self.channel_mul_conv = (
            _transform(in_channels, self.planes) if "channel_mul" in fusion_types else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MMCV's init: Kaiming (fan-in) attention mask, zero last conv of each transform, so
        the block starts as the identity."""
        if self.pooling_type == "att":
            kaiming_init(self.conv_mask, mode="fan_in")
        for transform in (self.channel_add_conv, self.channel_mul_conv):
            if transform is not None:
                constant_init(transform[-1], val=0)

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        """The context vector, ``(N, C, 1, 1)``."""
        if self.pooling_type == "avg":
            return self.avg_pool(x)
        n, c, h, w = x.shape
        mask = self.softmax(self.conv_mask(x).view(n, 1, h * w)).unsqueeze(-1)  # N,1,HW,1
        context = torch.matmul(x.view(n, c, h * w).unsqueeze(1), mask)  # N,1,C,1
        return context.view(n, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out
