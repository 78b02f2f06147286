"""MMSegmentation's ``MobileNetV2`` (registry scope ``mmseg``).

`MobileNetV2: Inverted Residuals and Linear Bottlenecks <https://arxiv.org/abs/1801.04381>`_.
MMPretrain has a classification ``MobileNetV2`` of its own (other arguments, a final 1x1
conv); this is MMSegmentation's, found under its plain name from configs with
``default_scope='mmseg'``. Its stages take per-stage ``strides`` and ``dilations``, so the
``d8`` configs keep 1/8 resolution with dilated depthwise convs.

Keys: ``conv1.conv``/``conv1.bn`` (stem), ``layer{1..7}.{j}.conv.{k}.conv``/``.bn``
(``InvertedResidual`` blocks; ``layer1`` has no expansion so ``k`` is 0..1, else 0..2).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.models.layers.inverted_residual import InvertedResidual
from vistra.models.layers.make_divisible import make_divisible
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer="Conv2d"),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]


def mmseg_init_cfg(
    name: str, pretrained: str | None, init_cfg: dict | list[dict] | None
) -> dict | list[dict]:
    """The init config after MMSegmentation's rules for the deprecated ``pretrained``:
    a path becomes a ``Pretrained`` entry, nothing at all gives Kaiming convs and unit
    norms."""
    if init_cfg and pretrained:
        raise ValueError(f"{name}: init_cfg and pretrained cannot be set at the same time")
    if pretrained is not None:
        if not isinstance(pretrained, str):
            raise TypeError(f"{name}: pretrained must be a str or None, got {pretrained!r}")
        warnings.warn(
            f"{name}(pretrained=...) is deprecated, use "
            "init_cfg=dict(type='Pretrained', checkpoint=...)",
            DeprecationWarning,
            stacklevel=3,
        )
        return dict(type="Pretrained", checkpoint=pretrained)
    return _DEFAULT_INIT if init_cfg is None else init_cfg


def set_norm_eval(module: nn.Module) -> None:
    """Put every BatchNorm under ``module`` in eval mode (frozen running statistics)."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.eval()


@MODELS.register_module(name="MobileNetV2", scope="mmseg")
class SegMobileNetV2(BaseModule):
    """Stem conv (stride 2) and seven stages of inverted residual blocks.

    ``arch_settings`` rows are ``[expand_ratio, channels, num_blocks]``; channels are
    scaled by ``widen_factor`` and rounded to multiples of 8. ``strides``/``dilations``
    apply to the first block of each stage. ``out_indices`` pick stages (0..6); a single
    output is returned as a tensor, several as a tuple.
    """

    arch_settings = [
        [1, 16, 1], [6, 24, 2], [6, 32, 3], [6, 64, 4], [6, 96, 3], [6, 160, 3], [6, 320, 1],
    ]  # fmt: skip

    def __init__(
        self,
        widen_factor: float = 1.0,
        strides: Sequence[int] = (1, 2, 2, 2, 1, 2, 1),
        dilations: Sequence[int] = (1, 1, 1, 1, 1, 1, 1),
        out_indices: Sequence[int] = (1, 2, 4, 6),
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU6"),  # noqa: B006
        norm_eval: bool = False,
        with_cp: bool = False,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(mmseg_init_cfg("MobileNetV2", pretrained, init_cfg))
        num_stages = len(self.arch_settings)
        if not len(strides) == len(dilations) == num_stages:
            raise ValueError(
                f"MobileNetV2 strides and dilations need {num_stages} entries (one per "
                f"stage), got strides={tuple(strides)}, dilations={tuple(dilations)}"
            )
        for index in out_indices:
            if index not in range(num_stages):
                raise ValueError(
                    f"MobileNetV2 out_indices={tuple(out_indices)}: each must be in "
                    f"range(0, {num_stages})"
                )
        if frozen_stages not in range(-1, num_stages):
            raise ValueError(
                f"MobileNetV2 frozen_stages={frozen_stages!r}: valid: -1..{num_stages - 1}"
            )
        self.pretrained = pretrained
        self.widen_factor, self.strides, self.dilations = widen_factor, strides, dilations
        self.out_indices, self.frozen_stages = out_indices, frozen_stages
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.norm_eval, self.with_cp = norm_eval, with_cp

        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.in_channels = make_divisible(32 * widen_factor, 8)
        self.conv1 = ConvModule(3, self.in_channels, 3, stride=2, padding=1, **common)
        self.layers: list[str] = []
        for i, (expand_ratio, channels, num_blocks) in enumerate(self.arch_settings):
            out_channels = make_divisible(channels * widen_factor, 8)
            blocks = []
            for j in range(num_blocks):
                blocks.append(
                    InvertedResidual(
                        self.in_channels, out_channels, strides[i] if j == 0 else 1,
                        expand_ratio=expand_ratio, dilation=dilations[i] if j == 0 else 1,
                        with_cp=with_cp, **common,
                    )
                )  # fmt: skip
                self.in_channels = out_channels
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.layers.append(f"layer{i + 1}")

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.conv1(x)
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _freeze_stages(self) -> None:
        frozen = [self.conv1] if self.frozen_stages >= 0 else []
        frozen += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        for i, module in enumerate(frozen):
            if i > 0:  # MMSegmentation leaves the stem's norm in train mode
                module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> SegMobileNetV2:
        """Train mode, keeping frozen stages (and with ``norm_eval`` every BatchNorm) in
        eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self
