"""Linear and pooling necks of the self-supervised configs.

- ``LinearNeck`` (MMPretrain): optional global pooling over ``gap_dim`` dimensions, then
  ``fc - norm - act`` (``norm`` a ``BN1d`` unless told otherwise; MaskFeat's
  projection). Keys ``fc.*``, ``norm.*``.
- ``LinearNeck`` (MMSelfSup 1.x, scope ``mmselfsup``): optional 2-D average pooling, then
  one ``fc`` (NPID's and ODC's embedding). Keys ``fc.*``.
- ``AvgPool2dNeck`` (MMSelfSup 1.x): adaptive average pooling of the one feature map.
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import build_activation_layer
from vistra.models.layers.norm import build_norm_layer
from vistra.registry import MODELS

_POOLS = {0: nn.Identity, 1: lambda: nn.AdaptiveAvgPool1d(1), 2: lambda: nn.AdaptiveAvgPool2d(1),
          3: lambda: nn.AdaptiveAvgPool3d(1)}  # fmt: skip


def _one_map(x: tuple | list | torch.Tensor, neck: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if len(x) != 1:
        raise ValueError(
            f"{neck} takes one backbone output, got {len(x)}; set the backbone's out_indices "
            "to a single stage"
        )
    return x[0]


@MODELS.register_module()
class LinearNeck(BaseModule):
    """``gap -> fc -> norm -> act``; a tuple input uses its last item (MMPretrain)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        gap_dim: int = 0,
        norm_cfg: dict | None = dict(type="BN1d"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if gap_dim not in _POOLS:
            raise ValueError(f"LinearNeck gap_dim must be one of 0, 1, 2, 3, got {gap_dim!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.gap = _POOLS[gap_dim]()
        self.fc = nn.Linear(in_channels, out_channels)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1] if norm_cfg else nn.Identity()
        self.act = build_activation_layer(act_cfg) if act_cfg else nn.Identity()

    def forward(self, inputs: tuple[torch.Tensor, ...] | torch.Tensor) -> tuple[torch.Tensor]:
        if isinstance(inputs, tuple):
            inputs = inputs[-1]
        x = self.gap(inputs)
        return (self.act(self.norm(self.fc(x.reshape(x.size(0), -1)))),)


@MODELS.register_module(name="LinearNeck", scope="mmselfsup")
class SelfSupLinearNeck(BaseModule):
    """Optional ``AdaptiveAvgPool2d(1)``, then one ``fc`` (MMSelfSup 1.x)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        with_avg_pool: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.with_avg_pool = with_avg_pool
        if with_avg_pool:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels, out_channels)

    def forward(self, x: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> list[torch.Tensor]:
        feat = _one_map(x, "LinearNeck")
        if self.with_avg_pool:
            feat = self.avgpool(feat)
        return [self.fc(feat.reshape(feat.size(0), -1))]


@MODELS.register_module()
class AvgPool2dNeck(nn.Module):
    """Adaptive average pooling of the one feature map to ``output_size``."""

    def __init__(self, output_size: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(output_size)

    def forward(self, x: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.avgpool(_one_map(x, "AvgPool2dNeck"))]
