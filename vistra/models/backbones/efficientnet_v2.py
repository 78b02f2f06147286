"""EfficientNetV2 backbone (`EfficientNetV2: Smaller Models and Faster Training
<https://arxiv.org/abs/2104.00298>`_), with MMPretrain's arguments and keys.

Early stages are plain 3x3 conv blocks (with a shortcut where the shape allows) and
Fused-MBConv blocks; the later ones MBConv with squeeze-excitation. Strided convs are
TensorFlow-"SAME" padded (``Conv2dAdaptivePadding``), the others padded symmetrically, as
the original weights need.

Keys: ``layers.0.{conv,bn}`` (the stem), ``layers.{1..n}.{j}`` blocks -- a conv block
(``conv``, ``bn``), Fused-MBConv (``conv1``, ``conv2``) or MBConv (``expand_conv``,
``depthwise_conv``, ``se.conv1``/``se.conv2``, ``linear_conv``) -- and
``layers.{n+1}.{conv,bn}`` (the final 1x1 conv).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.drop import DropPath
from vistra.models.layers.inverted_residual import Conv2dAdaptivePadding  # noqa: F401 (registers it)
from vistra.models.layers.mbconv import EdgeResidual, InvertedResidual
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer="Conv2d"),
    dict(type="Constant", layer=["_BatchNorm", "GroupNorm"], val=1),
]
# block_type of a stage row
_FINAL_CONV, _CONV, _FUSED, _MBCONV = -2, -1, 0, 1


class EnhancedConvModule(ConvModule):
    """A ``ConvModule`` with an identity shortcut (``has_skip``) through drop path; keys as
    ``ConvModule``'s. The shortcut needs stride 1 and as many output as input channels."""

    def __init__(
        self,
        *args,
        has_skip: bool = False,
        drop_path_rate: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.has_skip = has_skip
        conv = self.conv
        if has_skip and (conv.in_channels != conv.out_channels or tuple(conv.stride) != (1, 1)):
            raise ValueError(
                "EnhancedConvModule has_skip=True needs stride 1 and in_channels == "
                f"out_channels, got stride {conv.stride}, {conv.in_channels} -> {conv.out_channels}"
            )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate else nn.Identity()

    def forward(self, x: torch.Tensor, activate: bool = True, norm: bool = True) -> torch.Tensor:
        out = super().forward(x, activate=activate, norm=norm)
        return self.drop_path(out) + x if self.has_skip else out


@MODELS.register_module()
class EfficientNetV2(BaseModule):
    """EfficientNetV2: a strided 3x3 stem, the stages of the arch table and a final 1x1 conv,
    returned as ``layers`` 0 (stem) to ``len(arch)`` (final conv).

    ``arch`` names ``arch_settings`` or is a dict with ``layers``: a table of rows
    ``[repeat, kernel_size, stride, expand_ratio, in_channels, out_channels, se_ratio,
    block_type]`` (block_type -1: conv block, 0: Fused-MBConv, 1: MBConv, and -2 for the
    last row, the final conv). ``out_indices`` may count from the end; ``frozen_stages=n``
    freezes the first ``n`` layers (and keeps them in eval mode); ``norm_eval`` keeps every
    BatchNorm in eval mode while training.
    """

    _s = [[2, 3, 1, 1, 24, 24, 0.0, -1], [4, 3, 2, 4, 24, 48, 0.0, 0],
          [4, 3, 2, 4, 48, 64, 0.0, 0], [6, 3, 2, 4, 64, 128, 0.25, 1],
          [9, 3, 1, 6, 128, 160, 0.25, 1], [15, 3, 2, 6, 160, 256, 0.25, 1],
          [1, 1, 1, 1, 256, 1280, 0.0, -2]]  # fmt: skip
    _m = [[3, 3, 1, 1, 24, 24, 0.0, -1], [5, 3, 2, 4, 24, 48, 0.0, 0],
          [5, 3, 2, 4, 48, 80, 0.0, 0], [7, 3, 2, 4, 80, 160, 0.25, 1],
          [14, 3, 1, 6, 160, 176, 0.25, 1], [18, 3, 2, 6, 176, 304, 0.25, 1],
          [5, 3, 1, 6, 304, 512, 0.25, 1], [1, 1, 1, 1, 512, 1280, 0.0, -2]]  # fmt: skip
    _l = [[4, 3, 1, 1, 32, 32, 0.0, -1], [7, 3, 2, 4, 32, 64, 0.0, 0],
          [7, 3, 2, 4, 64, 96, 0.0, 0], [10, 3, 2, 4, 96, 192, 0.25, 1],
          [19, 3, 1, 6, 192, 224, 0.25, 1], [25, 3, 2, 6, 224, 384, 0.25, 1],
          [7, 3, 1, 6, 384, 640, 0.25, 1], [1, 1, 1, 1, 640, 1280, 0.0, -2]]  # fmt: skip
    arch_settings = {
        "s": _s,
        "small": _s,
        "m": _m,
        "medium": _m,
        "l": _l,
        "large": _l,
        "xl": [[4, 3, 1, 1, 32, 32, 0.0, -1], [8, 3, 2, 4, 32, 64, 0.0, 0],
               [8, 3, 2, 4, 64, 96, 0.0, 0], [16, 3, 2, 4, 96, 192, 0.25, 1],
               [24, 3, 1, 6, 192, 256, 0.25, 1], [32, 3, 2, 6, 256, 512, 0.25, 1],
               [8, 3, 1, 6, 512, 640, 0.25, 1], [1, 1, 1, 1, 640, 1280, 0.0, -2]],
        "b0": [[1, 3, 1, 1, 32, 16, 0.0, -1], [2, 3, 2, 4, 16, 32, 0.0, 0],
               [2, 3, 2, 4, 32, 48, 0.0, 0], [3, 3, 2, 4, 48, 96, 0.25, 1],
               [5, 3, 1, 6, 96, 112, 0.25, 1], [8, 3, 2, 6, 112, 192, 0.25, 1],
               [1, 1, 1, 1, 192, 1280, 0.0, -2]],
        "b1": [[2, 3, 1, 1, 32, 16, 0.0, -1], [3, 3, 2, 4, 16, 32, 0.0, 0],
               [3, 3, 2, 4, 32, 48, 0.0, 0], [4, 3, 2, 4, 48, 96, 0.25, 1],
               [6, 3, 1, 6, 96, 112, 0.25, 1], [9, 3, 2, 6, 112, 192, 0.25, 1],
               [1, 1, 1, 1, 192, 1280, 0.0, -2]],
        "b2": [[2, 3, 1, 1, 32, 16, 0.0, -1], [3, 3, 2, 4, 16, 32, 0.0, 0],
               [3, 3, 2, 4, 32, 56, 0.0, 0], [4, 3, 2, 4, 56, 104, 0.25, 1],
               [6, 3, 1, 6, 104, 120, 0.25, 1], [10, 3, 2, 6, 120, 208, 0.25, 1],
               [1, 1, 1, 1, 208, 1408, 0.0, -2]],
        "b3": [[2, 3, 1, 1, 40, 16, 0.0, -1], [3, 3, 2, 4, 16, 40, 0.0, 0],
               [3, 3, 2, 4, 40, 56, 0.0, 0], [5, 3, 2, 4, 56, 112, 0.25, 1],
               [7, 3, 1, 6, 112, 136, 0.25, 1], [12, 3, 2, 6, 136, 232, 0.25, 1],
               [1, 1, 1, 1, 232, 1536, 0.0, -2]],
    }  # fmt: skip

    def __init__(
        self,
        arch: str | dict = "s",
        in_channels: int = 3,
        drop_path_rate: float = 0.0,
        out_indices: int | Sequence[int] = (-1,),
        frozen_stages: int = 0,
        conv_cfg: dict | None = dict(type="Conv2dAdaptivePadding"),  # noqa: B006 (never mutated)
        norm_cfg: dict | None = dict(type="BN", eps=1e-3, momentum=0.1),  # noqa: B006
        act_cfg: dict | None = dict(type="Swish"),  # noqa: B006
        norm_eval: bool = False,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        self.arch = self._parse_arch(arch)
        if not isinstance(frozen_stages, int) or not 0 <= frozen_stages <= len(self.arch):
            raise ValueError(
                f"frozen_stages must be in range(0, {len(self.arch) + 1}), got {frozen_stages!r}"
            )
        self.drop_path_rate = drop_path_rate
        self.frozen_stages = frozen_stages
        self.norm_eval, self.with_cp = norm_eval, with_cp
        self.in_channels = in_channels
        self.out_channels = self.arch[-1][5]
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.layers = nn.ModuleList()
        self._make_layers()
        self.out_indices = self._parse_out_indices(out_indices)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: str | dict) -> list[list]:
        table = {name: {"layers": rows} for name, rows in cls.arch_settings.items()}
        rows = pick_arch(arch, table, "EfficientNetV2", ("layers",))["layers"]
        if (
            not isinstance(rows, Sequence)
            or len(rows) < 2
            or not all(isinstance(r, Sequence) and len(r) == 8 for r in rows)
        ):
            raise ValueError(
                "arch 'layers' must be a list of at least two rows [repeat, kernel_size, "
                "stride, expand_ratio, in_channels, out_channels, se_ratio, block_type], "
                f"got {rows!r}"
            )
        if rows[-1][-1] != _FINAL_CONV or any(
            r[-1] not in (_CONV, _FUSED, _MBCONV) for r in rows[:-1]
        ):
            raise ValueError(
                "arch 'layers': the last row's block_type must be -2 (the final conv) and the "
                f"others' -1, 0 or 1, got {[r[-1] for r in rows]}"
            )
        return [list(r) for r in rows]

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or not all(
            isinstance(i, int) for i in out_indices
        ):
            raise TypeError(
                f"out_indices must be an int or a sequence of ints, got {out_indices!r}"
            )
        num = len(self.layers)
        resolved = [num + i if i < 0 else i for i in out_indices]
        for index, value in zip(out_indices, resolved, strict=True):
            if not 0 <= value < num:
                raise ValueError(f"out_indices items must be in range(-{num}, {num}), got {index}")
        return resolved

    def _make_layers(self) -> None:
        first, *stages, last = self.arch
        self.layers.append(
            ConvModule(
                self.in_channels, first[4], 3, stride=2, conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
            )
        )  # fmt: skip
        stages = [first, *stages]
        # stochastic depth grows linearly over all blocks
        dpr = torch.linspace(0, self.drop_path_rate, sum(s[0] for s in stages)).tolist()
        in_channels, block_idx = first[4], 0
        for repeat, kernel_size, stride, expand_ratio, _, out_channels, se_ratio, kind in stages:
            blocks = []
            for i in range(repeat):
                stride = stride if i == 0 else 1
                blocks.append(
                    self._block(
                        kind, in_channels, out_channels, kernel_size, stride, expand_ratio,
                        se_ratio, dpr[block_idx],
                    )
                )  # fmt: skip
                in_channels = out_channels
                block_idx += 1
            self.layers.append(nn.Sequential(*blocks))
        self.layers.append(
            ConvModule(
                in_channels, self.out_channels, last[1], stride=last[2], conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
            )
        )  # fmt: skip

    def _block(
        self,
        kind: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: float,
        se_ratio: float,
        drop_path_rate: float,
    ) -> nn.Module:
        if kind == _CONV:
            has_skip = stride == 1 and in_channels == out_channels
            return EnhancedConvModule(
                in_channels, out_channels, kernel_size, stride=stride, padding=1,
                has_skip=has_skip, drop_path_rate=drop_path_rate if has_skip else 0.0,
                norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
            )  # fmt: skip
        mid_channels = int(in_channels * expand_ratio)
        se_cfg = None
        if kind == _MBCONV and se_ratio > 0:
            # squeeze to se_ratio times the block's input width
            se_cfg = dict(
                channels=mid_channels, ratio=expand_ratio * (1.0 / se_ratio), divisor=1,
                act_cfg=(self.act_cfg, dict(type="Sigmoid")),
            )  # fmt: skip
        block = EdgeResidual if kind == _FUSED else InvertedResidual
        return block(
            in_channels=in_channels, out_channels=out_channels, mid_channels=mid_channels,
            kernel_size=kernel_size, stride=stride, se_cfg=se_cfg,
            # only the strided convs pad TF-"SAME"
            conv_cfg=self.conv_cfg if stride == 2 else None, norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg, drop_path_rate=drop_path_rate, with_cp=self.with_cp,
        )  # fmt: skip

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

    def train(self, mode: bool = True) -> EfficientNetV2:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self
