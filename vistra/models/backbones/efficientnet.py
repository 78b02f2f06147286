"""EfficientNet backbone (`EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks <https://arxiv.org/abs/1905.11946>`_), with MMPretrain's arguments and keys; also
the EfficientNet-EdgeTPU archs ``es``/``em``/``el``, whose early stages are Fused-MBConv
(``EdgeResidual``) blocks without squeeze-excitation, and the Noisy-Student ``l2``.

An arch is a width and a depth factor applied to one of two base layer tables (``'b'``:
EfficientNet-B0, ``'e'``: EdgeTPU-S). Widths are rounded to multiples of 8; each stage is
cut into runs of blocks of one width, each run repeated ``ceil(depth * n)`` times, and a
run that does not downsample joins the stage before it (so the scaled nets keep seven
layers). Convs are TensorFlow-"SAME" padded (``Conv2dAdaptivePadding``) as the original
weights need.

Keys: ``layers.0.{conv,bn}`` (the stem), ``layers.{1..5}.{j}`` blocks -- MBConv
(``expand_conv``, ``depthwise_conv``, ``se.conv1``/``se.conv2``, ``linear_conv``) or
EdgeResidual (``conv1``, ``conv2``) -- and ``layers.6.{conv,bn}`` (the final 1x1 conv).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.inverted_residual import Conv2dAdaptivePadding  # noqa: F401 (registers it)
from vistra.models.layers.make_divisible import make_divisible
from vistra.models.layers.mbconv import EdgeResidual, InvertedResidual
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer="Conv2d"),
    dict(type="Constant", layer=["_BatchNorm", "GroupNorm"], val=1),
]

# A block row: (kernel_size, out_channels, se_ratio, stride, expand_ratio, block_type),
# block_type -1: a plain ConvModule (stem, final conv), 0: MBConv, 1: EdgeResidual.
Row = list
_MBCONV, _EDGE = 0, 1


def scale_layers(layers: list[list[Row]], widen: float, deepen: float) -> list[list[Row]]:
    """The layer table of a scaled EfficientNet: every width times ``widen`` (rounded to a
    multiple of 8), every run of same-width blocks of the middle stages repeated
    ``ceil(deepen * n)`` times (cut short, or its last block repeated), and a run whose
    first block keeps the resolution merged into the stage before it."""
    layers = [[list(row) for row in stage] for stage in layers]
    for stage in layers:
        for row in stage:
            row[1] = make_divisible(row[1] * widen, 8)
    first, *middle, last = layers
    runs: list[list[Row]] = []
    for stage in middle:
        start = 0
        for end in range(1, len(stage) + 1):
            if end == len(stage) or stage[end][1] != stage[end - 1][1]:
                runs.append(stage[start:end])
                start = end
    stages = [first]
    for i, run in enumerate(runs):
        n = int(math.ceil(deepen * len(run)))
        run = run[:n] if n <= len(run) else run + [run[-1]] * (n - len(run))
        if i > 0 and run[0][3] == 1:
            stages[-1] = stages[-1] + run
        else:
            stages.append(run)
    return stages + [last]


@MODELS.register_module()
class EfficientNet(BaseModule):
    """EfficientNet: a strided stem conv, stages of MBConv / EdgeResidual blocks and a final
    1x1 conv, returned as ``layers`` 0 (stem) to 6 (final conv).

    ``arch`` names ``arch_settings`` or is a dict with ``widen_factor`` and
    ``deepen_factor`` (and optionally ``layers``: ``'b'`` or ``'e'``, the base table).
    ``out_indices`` picks layers in ``range(7)``; ``frozen_stages=n`` freezes the first
    ``n`` layers (and keeps them in eval mode); ``norm_eval`` keeps every BatchNorm in eval
    mode while training.
    """

    # the two base tables (EfficientNet-B0 and EfficientNet-EdgeTPU-S); rows as in ``Row``
    layer_settings = {
        "b": [
            [[3, 32, 0, 2, 0, -1]],
            [[3, 16, 4, 1, 1, 0]],
            [[3, 24, 4, 2, 6, 0], [3, 24, 4, 1, 6, 0]],
            [[5, 40, 4, 2, 6, 0], [5, 40, 4, 1, 6, 0]],
            [[3, 80, 4, 2, 6, 0], [3, 80, 4, 1, 6, 0], [3, 80, 4, 1, 6, 0],
             [5, 112, 4, 1, 6, 0], [5, 112, 4, 1, 6, 0], [5, 112, 4, 1, 6, 0]],
            [[5, 192, 4, 2, 6, 0], [5, 192, 4, 1, 6, 0], [5, 192, 4, 1, 6, 0],
             [5, 192, 4, 1, 6, 0], [3, 320, 4, 1, 6, 0]],
            [[1, 1280, 0, 1, 0, -1]],
        ],
        "e": [
            [[3, 32, 0, 2, 0, -1]],
            [[3, 24, 0, 1, 3, 1]],
            [[3, 32, 0, 2, 8, 1], [3, 32, 0, 1, 8, 1]],
            [[3, 48, 0, 2, 8, 1], [3, 48, 0, 1, 8, 1], [3, 48, 0, 1, 8, 1], [3, 48, 0, 1, 8, 1]],
            [[5, 96, 0, 2, 8, 0], [5, 96, 0, 1, 8, 0], [5, 96, 0, 1, 8, 0], [5, 96, 0, 1, 8, 0],
             [5, 96, 0, 1, 8, 0], [5, 144, 0, 1, 8, 0], [5, 144, 0, 1, 8, 0],
             [5, 144, 0, 1, 8, 0], [5, 144, 0, 1, 8, 0]],
            [[5, 192, 0, 2, 8, 0], [5, 192, 0, 1, 8, 0]],
            [[1, 1280, 0, 1, 0, -1]],
        ],
    }  # fmt: skip

    # width factor, depth factor, the input resolution the arch was trained at, base table
    arch_settings = {
        "b0": dict(widen_factor=1.0, deepen_factor=1.0, resolution=224, layers="b"),
        "b1": dict(widen_factor=1.0, deepen_factor=1.1, resolution=240, layers="b"),
        "b2": dict(widen_factor=1.1, deepen_factor=1.2, resolution=260, layers="b"),
        "b3": dict(widen_factor=1.2, deepen_factor=1.4, resolution=300, layers="b"),
        "b4": dict(widen_factor=1.4, deepen_factor=1.8, resolution=380, layers="b"),
        "b5": dict(widen_factor=1.6, deepen_factor=2.2, resolution=456, layers="b"),
        "b6": dict(widen_factor=1.8, deepen_factor=2.6, resolution=528, layers="b"),
        "b7": dict(widen_factor=2.0, deepen_factor=3.1, resolution=600, layers="b"),
        "b8": dict(widen_factor=2.2, deepen_factor=3.6, resolution=672, layers="b"),
        "l2": dict(widen_factor=4.3, deepen_factor=5.3, resolution=800, layers="b"),
        "es": dict(widen_factor=1.0, deepen_factor=1.0, resolution=224, layers="e"),
        "em": dict(widen_factor=1.0, deepen_factor=1.1, resolution=240, layers="e"),
        "el": dict(widen_factor=1.2, deepen_factor=1.4, resolution=300, layers="e"),
    }

    def __init__(
        self,
        arch: str | dict = "b0",
        drop_path_rate: float = 0.0,
        out_indices: int | Sequence[int] = (6,),
        frozen_stages: int = 0,
        conv_cfg: dict | None = dict(type="Conv2dAdaptivePadding"),  # noqa: B006 (never mutated)
        norm_cfg: dict | None = dict(type="BN", eps=1e-3),  # noqa: B006
        act_cfg: dict | None = dict(type="Swish"),  # noqa: B006
        norm_eval: bool = False,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        arch = pick_arch(
            arch, self.arch_settings, "EfficientNet", ("widen_factor", "deepen_factor")
        )
        base = arch.get("layers", "b")
        if base not in self.layer_settings:
            raise ValueError(
                f"arch 'layers' must be one of {sorted(self.layer_settings)}, got {base!r}"
            )
        num_layers = len(self.layer_settings[base])
        self.out_indices = _check_indices(out_indices, num_layers)
        if not isinstance(frozen_stages, int) or not 0 <= frozen_stages <= num_layers:
            raise ValueError(
                f"frozen_stages must be in range(0, {num_layers + 1}), got {frozen_stages!r}"
            )
        self.arch_setting = arch
        self.drop_path_rate = drop_path_rate
        self.frozen_stages = frozen_stages
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.norm_eval, self.with_cp = norm_eval, with_cp

        self.layer_setting = scale_layers(
            self.layer_settings[base], arch["widen_factor"], arch["deepen_factor"]
        )
        stem, head = self.layer_setting[0][0], self.layer_setting[-1][0]
        self.in_channels = make_divisible(stem[1], 8)
        self.out_channels = head[1]
        self.layers = nn.ModuleList([self._conv(3, self.in_channels, stem)])
        self._make_blocks()
        self.layers.append(self._conv(self.in_channels, self.out_channels, head))
        self._freeze_stages()

    def _conv(self, in_channels: int, out_channels: int, row: Row) -> ConvModule:
        kernel_size, stride = row[0], row[3]
        return ConvModule(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
            conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
        )  # fmt: skip

    def _se_cfg(self, mid_channels: int, se_ratio: float, expand_ratio: float) -> dict | None:
        if se_ratio <= 0:
            return None
        # the squeeze width is the block's *input* width divided by se_ratio
        return dict(
            channels=mid_channels, ratio=expand_ratio * se_ratio, divisor=1,
            act_cfg=(self.act_cfg, dict(type="Sigmoid")),
        )  # fmt: skip

    def _make_blocks(self) -> None:
        stages = self.layer_setting[1:-1]
        # stochastic depth grows linearly over all blocks
        dpr = torch.linspace(0, self.drop_path_rate, sum(len(s) for s in stages)).tolist()
        block_idx = 0
        for stage in stages:
            blocks = []
            for j, (kernel_size, out, se_ratio, stride, expand_ratio, block_type) in enumerate(
                stage
            ):
                out_channels = make_divisible(out, 8)
                kwargs: dict = {}
                block: type[nn.Module] = InvertedResidual
                if block_type == _EDGE:
                    block = EdgeResidual
                    # EdgeTPU: the repeats of an expand-3 block expand by 4, without shortcut
                    repeat_of_expand3 = j > 0 and expand_ratio == 3
                    if repeat_of_expand3:
                        expand_ratio = 4
                    kwargs["with_residual"] = not repeat_of_expand3
                elif block_type != _MBCONV:
                    raise ValueError(f"EfficientNet block_type must be 0 or 1, got {block_type!r}")
                mid_channels = int(self.in_channels * expand_ratio)
                blocks.append(
                    block(
                        in_channels=self.in_channels, out_channels=out_channels,
                        mid_channels=mid_channels, kernel_size=kernel_size, stride=stride,
                        se_cfg=self._se_cfg(mid_channels, se_ratio, expand_ratio),
                        conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
                        drop_path_rate=dpr[block_idx], with_cp=self.with_cp, **kwargs,
                    )
                )  # fmt: skip
                self.in_channels = out_channels
                block_idx += 1
            self.layers.append(nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for layer in self.layers[: self.frozen_stages]:
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> EfficientNet:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


def _check_indices(out_indices: int | Sequence[int], num_layers: int) -> list[int]:
    """``out_indices`` as a list, each in ``range(num_layers)`` (MMPretrain's rule: no
    negative indices)."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    if not isinstance(out_indices, Sequence) or not all(isinstance(i, int) for i in out_indices):
        raise TypeError(f"out_indices must be an int or a sequence of ints, got {out_indices!r}")
    for index in out_indices:
        if index not in range(num_layers):
            raise ValueError(f"out_indices items must be in range(0, {num_layers}), got {index}")
    return list(out_indices)
