"""DenseNet backbone (`Densely Connected Convolutional Networks
<https://arxiv.org/abs/1608.06993>`_), with MMPretrain's arguments and keys.

Every layer of a dense block sees the concatenation of the block input and all earlier
layers' outputs and adds ``growth_rate`` channels; transitions between blocks compress the
channels by ``compression_factor`` and halve the resolution.

Keys: ``stem.{0,1}`` (7x7 stride-2 conv, norm; then activation and 3x3 max pool),
``stages.{i}.block.{j}.{norm1,conv1,norm2,conv2}`` (BN-ReLU-1x1 conv to
``bn_size * growth_rate``, BN-ReLU-3x3 conv to ``growth_rate``),
``transitions.{i}.{norm,conv}`` (BN-ReLU-1x1 conv, 2x2 average pool) between blocks and
``transitions.{last}.0`` (the final norm, then activation) after the last one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import build_activation_layer, build_norm_layer
from vistra.models.utils.arch import pick_arch
from vistra.models.utils.out_indices import parse_out_indices
from vistra.registry import MODELS


class DenseLayer(BaseModule):
    """Bottleneck layer ``conv2(act(norm2(conv1(act(norm1(cat(inputs)))))))``, returning
    ``growth_rate`` new channels (dropout on them with ``drop_rate``)."""

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        bn_size: int,
        norm_cfg: dict,
        act_cfg: dict,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        mid_channels = bn_size * growth_rate
        self.norm1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.act = build_activation_layer(act_cfg)
        self.norm2 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.conv2 = nn.Conv2d(mid_channels, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def _bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.act(self.norm1(torch.cat(features, 1))))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and any(f.requires_grad for f in features):
            # the concatenation is the memory hog: recompute it in backward
            out = cp.checkpoint(self._bottleneck, *features, use_reentrant=False)
        else:
            out = self._bottleneck(*features)
        out = self.conv2(self.act(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class DenseBlock(nn.Module):
    """``num_layers`` dense layers (``block``); returns the input and every layer's output
    concatenated: ``in_channels + num_layers * growth_rate`` channels."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, **layer_kwargs) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, **layer_kwargs)
            for i in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.block:
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseTransition(nn.Sequential):
    """norm -> activation -> 1x1 conv -> 2x2 average pool, between two dense blocks."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict, act_cfg: dict) -> None:
        super().__init__()
        self.add_module("norm", build_norm_layer(norm_cfg, in_channels)[1])
        self.add_module("act", build_activation_layer(act_cfg))
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


@MODELS.register_module()
class DenseNet(BaseModule):
    """DenseNet: a stride-4 stem, four dense blocks with transitions between them, and a
    final norm + activation.

    ``arch`` is a name of ``arch_settings`` or a dict with ``growth_rate``, ``depths`` (the
    layers per block) and ``init_channels`` (the stem width). ``out_indices`` picks the
    blocks whose outputs (after their transition) are returned. ``frozen_stages=n`` freezes
    the first ``n`` blocks and their transitions (the stem stays trainable, as upstream).
    ``memory_efficient`` recomputes each layer's concatenation in backward.
    """

    arch_settings = {
        "121": {"growth_rate": 32, "depths": [6, 12, 24, 16], "init_channels": 64},
        "169": {"growth_rate": 32, "depths": [6, 12, 32, 32], "init_channels": 64},
        "201": {"growth_rate": 32, "depths": [6, 12, 48, 32], "init_channels": 64},
        "161": {"growth_rate": 48, "depths": [6, 12, 36, 24], "init_channels": 96},
    }

    def __init__(
        self,
        arch: str | dict = "121",
        in_channels: int = 3,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        compression_factor: float = 0.5,
        memory_efficient: bool = False,
        norm_cfg: dict = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict = dict(type="ReLU"),  # noqa: B006 (never mutated)
        out_indices: int | Sequence[int] = -1,
        frozen_stages: int = 0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        arch = pick_arch(
            arch, self.arch_settings, "DenseNet", ("growth_rate", "depths", "init_channels")
        )
        self.growth_rate = arch["growth_rate"]
        self.depths = list(arch["depths"])
        self.init_channels = arch["init_channels"]
        self.num_stages = len(self.depths)
        if not 0 < compression_factor <= 1:
            raise ValueError(
                f"DenseNet compression_factor must be in (0, 1], got {compression_factor}"
            )
        self.out_indices = parse_out_indices(out_indices, self.num_stages, "DenseNet")
        if not isinstance(frozen_stages, int) or not 0 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f"DenseNet frozen_stages must be in 0..{self.num_stages}, got {frozen_stages!r}"
            )
        self.frozen_stages = frozen_stages
        self.act = build_activation_layer(act_cfg)

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, self.init_channels, 7, stride=2, padding=3, bias=False),
            build_norm_layer(norm_cfg, self.init_channels)[1],
            build_activation_layer(act_cfg),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        channels = self.init_channels
        for i, depth in enumerate(self.depths):
            self.stages.append(
                DenseBlock(
                    depth, channels, self.growth_rate, bn_size=bn_size, norm_cfg=norm_cfg,
                    act_cfg=act_cfg, drop_rate=drop_rate, memory_efficient=memory_efficient,
                )
            )  # fmt: skip
            channels += depth * self.growth_rate
            if i < self.num_stages - 1:
                out_channels = math.floor(channels * compression_factor)
                self.transitions.append(DenseTransition(channels, out_channels, norm_cfg, act_cfg))
                channels = out_channels
            else:
                self.transitions.append(
                    nn.Sequential(
                        build_norm_layer(norm_cfg, channels)[1], build_activation_layer(act_cfg)
                    )
                )
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, (stage, transition) in enumerate(zip(self.stages, self.transitions)):
            x = transition(stage(x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            stage, transition = self.stages[i], self.transitions[i]
            stage.eval()
            transition.eval()
            for param in chain(stage.parameters(), transition.parameters()):
                param.requires_grad = False

    def train(self, mode: bool = True) -> DenseNet:
        super().train(mode)
        self._freeze_stages()
        return self
