"""Global average pooling neck (MMPretrain's ``GlobalAveragePooling``)."""

from __future__ import annotations

import torch
from torch import nn

from vistra.registry import MODELS


@MODELS.register_module()
class GlobalAveragePooling(nn.Module):
    """Average each feature map over its spatial dims and flatten to ``(N, C)``.

    Takes a tensor or a tuple of tensors (one per backbone stage) and returns the same
    kind. ``dim`` is the number of spatial dims: 1, 2 or 3. No parameters, so no keys.
    """

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        pools = {
            1: nn.AdaptiveAvgPool1d(1),
            2: nn.AdaptiveAvgPool2d((1, 1)),
            3: nn.AdaptiveAvgPool3d((1, 1, 1)),
        }
        if dim not in pools:
            raise ValueError(f"GlobalAveragePooling dim must be 1, 2 or 3, got {dim}")
        self.gap = pools[dim]

    def init_weights(self) -> None:
        """Nothing to initialise (kept so that parents may call it)."""

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.gap(x).view(x.size(0), -1)

    def forward(
        self, inputs: torch.Tensor | tuple[torch.Tensor, ...]
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if isinstance(inputs, tuple):
            return tuple(self._pool(x) for x in inputs)
        if isinstance(inputs, torch.Tensor):
            return self._pool(inputs)
        raise TypeError(
            f"GlobalAveragePooling takes a tensor or a tuple of tensors, got {type(inputs).__name__}"
        )
