"""``MLANeck``: the multi-level feature aggregation of `SETR
<https://arxiv.org/abs/2012.15840>`_ (SETR-MLA), MMSegmentation 1.x.

Keys: ``norm.{i}`` (a LayerNorm per input level, applied over the channels of every
token), ``mla.channel_proj.{i}.conv`` (1x1) and ``mla.feat_extract.{i}.conv`` (3x3), plus
``.bn`` etc. with a ``norm_cfg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.models.layers.norm import build_norm_layer
from vistra.registry import MODELS


class MLAModule(nn.Module):
    """Project every level to ``out_channels``, sum them top-down starting from the
    deepest (so output ``k`` aggregates the ``k + 1`` deepest levels), then a 3x3 conv each.
    The outputs come deepest-first, as upstream returns them."""

    def __init__(
        self,
        in_channels: Sequence[int] = (1024, 1024, 1024, 1024),
        out_channels: int = 256,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        self.channel_proj = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg) for c in in_channels
        )
        self.feat_extract = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for _ in in_channels
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        projected = [conv(x) for x, conv in zip(inputs, self.channel_proj)][::-1]
        sums: list[torch.Tensor] = []
        for feat in projected:
            sums.append(feat if not sums else sums[-1] + feat)
        return tuple(conv(x) for x, conv in zip(sums, self.feat_extract))


@MODELS.register_module()
class MLANeck(BaseModule):
    """Token LayerNorm per level (``norm_layer``), then :class:`MLAModule`."""

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        norm_layer: dict = dict(type="LN", eps=1e-6, requires_grad=True),  # noqa: B006 (never mutated)
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, (list, tuple)):
            raise TypeError(f"MLANeck in_channels must be a list, got {in_channels!r}")
        self.in_channels, self.out_channels = list(in_channels), out_channels
        self.norm = nn.ModuleList(build_norm_layer(norm_layer, c)[1] for c in self.in_channels)
        self.mla = MLAModule(self.in_channels, out_channels, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f"MLANeck expects {len(self.in_channels)} inputs (in_channels="
                f"{self.in_channels}), got {len(inputs)}"
            )
        normed = [
            norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(x.shape).contiguous()
            for x, norm in zip(inputs, self.norm)
        ]
        return self.mla(normed)
