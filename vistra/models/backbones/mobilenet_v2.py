"""MMPretrain's ``MobileNetV2`` backbone (`MobileNetV2: Inverted Residuals and Linear
Bottlenecks <https://arxiv.org/abs/1801.04381>`_), the classification network.

MMSegmentation's ``MobileNetV2`` (strides and dilations per stage, no final conv) is
:mod:`vistra.models.backbones.mobilenet_v2_mmseg`, registered under scope ``mmseg``; this
is the plain entry, which configs without that default scope get.

Keys: ``conv1.{conv,bn}`` (the stem), ``layer{1..7}.{j}.conv.{k}.{conv,bn}`` (inverted
residual blocks; ``layer1`` has no expansion, so ``k`` is 0..1, else 0..2) and
``conv2.{conv,bn}`` (the final 1x1 conv).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.base import BaseModule
from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.inverted_residual import InvertedResidual
from vistra.models.layers.make_divisible import make_divisible
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer=["Conv2d"]),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]


def check_out_indices(out_indices: int | Sequence[int], num_layers: int) -> list[int]:
    """``out_indices`` as a list, each in ``range(num_layers)`` (no negative indices, as
    MMPretrain's mobile networks)."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    if not isinstance(out_indices, Sequence) or not all(isinstance(i, int) for i in out_indices):
        raise TypeError(f"out_indices must be an int or a sequence of ints, got {out_indices!r}")
    for index in out_indices:
        if index not in range(num_layers):
            raise ValueError(f"out_indices items must be in range(0, {num_layers}), got {index}")
    return list(out_indices)


def check_frozen_stages(frozen_stages: int, low: int, high: int) -> int:
    """``frozen_stages`` if it is an int in ``range(low, high)``."""
    if not isinstance(frozen_stages, int) or frozen_stages not in range(low, high):
        raise ValueError(f"frozen_stages must be in range({low}, {high}), got {frozen_stages!r}")
    return frozen_stages


@MODELS.register_module()
class MobileNetV2(BaseModule):
    """MobileNetV2: a strided 3x3 stem, seven stages of inverted residual blocks and a final
    1x1 conv to 1280 channels (more when ``widen_factor > 1``).

    ``out_indices`` picks from the seven stages and the final conv (0..7).
    ``frozen_stages=n`` (``-1``: none) stops the stem's gradients and freezes stages
    ``1..n`` (in eval mode); ``norm_eval`` keeps every BatchNorm in eval mode while
    training.
    """

    # expand_ratio, channels, number of blocks, stride of the first block
    arch_settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                     [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]  # fmt: skip

    def __init__(
        self,
        widen_factor: float = 1.0,
        out_indices: int | Sequence[int] = (7,),
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU6"),  # noqa: B006
        norm_eval: bool = False,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(widen_factor, (int, float)) or widen_factor <= 0:
            raise ValueError(f"widen_factor must be a positive number, got {widen_factor!r}")
        self.widen_factor = widen_factor
        self.out_indices = check_out_indices(out_indices, 8)
        self.frozen_stages = check_frozen_stages(frozen_stages, -1, 8)
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.norm_eval, self.with_cp = norm_eval, with_cp

        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.in_channels = make_divisible(32 * widen_factor, 8)
        self.conv1 = ConvModule(3, self.in_channels, 3, stride=2, padding=1, **common)
        self.layers: list[str] = []
        for i, (expand_ratio, channels, num_blocks, stride) in enumerate(self.arch_settings):
            out_channels = make_divisible(channels * widen_factor, 8)
            self.add_module(
                f"layer{i + 1}", self.make_layer(out_channels, num_blocks, stride, expand_ratio)
            )
            self.layers.append(f"layer{i + 1}")
        # the final width only grows with the multiplier, never shrinks
        self.out_channel = int(1280 * widen_factor) if widen_factor > 1.0 else 1280
        self.conv2 = ConvModule(self.in_channels, self.out_channel, 1, **common)
        self.layers.append("conv2")
        self._freeze_stages()

    def make_layer(
        self, out_channels: int, num_blocks: int, stride: int, expand_ratio: float
    ) -> nn.Sequential:
        """``num_blocks`` inverted residual blocks, the first with ``stride``."""
        blocks = []
        for i in range(num_blocks):
            blocks.append(
                InvertedResidual(
                    self.in_channels, out_channels, stride if i == 0 else 1,
                    expand_ratio=expand_ratio, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg, with_cp=self.with_cp,
                )
            )  # fmt: skip
            self.in_channels = out_channels
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.conv1(x)
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            # MMPretrain stops the stem's gradients but leaves its BatchNorm in train mode
            for param in self.conv1.parameters():
                param.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            layer = getattr(self, f"layer{i}")
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> MobileNetV2:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
