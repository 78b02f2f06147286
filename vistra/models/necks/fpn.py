"""``FPN`` neck (`Feature Pyramid Networks <https://arxiv.org/abs/1612.03144>`_),
MMSegmentation 1.x.

Keys: ``lateral_convs.{i}.conv`` (1x1), ``fpn_convs.{i}.conv`` (3x3; extra stride-2 levels
appended after them), plus ``.bn``/``.gn`` with a ``norm_cfg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS

EXTRA_CONV_SOURCES = ("on_input", "on_lateral", "on_output")


@MODELS.register_module()
class FPN(BaseModule):
    """Top-down pathway with lateral connections over inputs ``start_level`` to
    ``end_level`` (exclusive; -1 means the last), then ``num_outs`` outputs: extra levels
    come from stride-1 max pooling or, with ``add_extra_convs``, from stride-2 convs on the
    input (``'on_input'``), the last lateral (``'on_lateral'``) or the last output
    (``'on_output'``, what ``True`` means). ``upsample_cfg`` goes to ``resize`` (a
    ``scale_factor`` there replaces matching the next level's size).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_outs: int,
        start_level: int = 0,
        end_level: int = -1,
        add_extra_convs: bool | str = False,
        extra_convs_on_inputs: bool = False,
        relu_before_extra_convs: bool = False,
        no_norm_on_lateral: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        upsample_cfg: dict = dict(mode="nearest"),  # noqa: B006 (copied)
        init_cfg: dict | list[dict] | None = dict(  # noqa: B006 (copied by BaseModule)
            type="Xavier", layer="Conv2d", distribution="uniform"
        ),
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(in_channels, (list, tuple)):
            raise TypeError(f"FPN in_channels must be a list, got {in_channels!r}")
        self.in_channels, self.out_channels = list(in_channels), out_channels
        self.num_ins, self.num_outs = len(in_channels), num_outs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.no_norm_on_lateral = no_norm_on_lateral
        self.upsample_cfg = dict(upsample_cfg)
        self.backbone_end_level = _check_levels(self.num_ins, num_outs, start_level, end_level)
        self.start_level, self.end_level = start_level, end_level
        self.add_extra_convs = _extra_conv_source(add_extra_convs, extra_convs_on_inputs)

        common = dict(conv_cfg=conv_cfg, act_cfg=act_cfg, inplace=False)
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for i in range(start_level, self.backbone_end_level):
            lateral_norm = None if no_norm_on_lateral else norm_cfg
            self.lateral_convs.append(
                ConvModule(in_channels[i], out_channels, 1, norm_cfg=lateral_norm, **common)
            )
            self.fpn_convs.append(
                ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg, **common)
            )
        extra_levels = num_outs - self.backbone_end_level + start_level
        if self.add_extra_convs and extra_levels >= 1:
            for i in range(extra_levels):
                first_on_input = i == 0 and self.add_extra_convs == "on_input"
                channels = (
                    in_channels[self.backbone_end_level - 1] if first_on_input else out_channels
                )
                self.fpn_convs.append(
                    ConvModule(
                        channels, out_channels, 3, stride=2, padding=1, norm_cfg=norm_cfg, **common
                    )
                )

    def init_weights(self) -> None:
        """Apply ``init_cfg`` (Xavier-uniform convs by default) and keep it.

        MMEngine does not descend into the plain ``nn.ModuleList``s holding the convs, so
        the ConvModules' own Kaiming init does not run again over the Xavier weights; the
        generic ``BaseModule.init_weights`` would re-run it, hence this override.
        """
        from vistra.models.init import initialize  # torch-heavy; imported when used

        if self.is_init:
            return
        cfgs = self.init_cfg if isinstance(self.init_cfg, (list, tuple)) else [self.init_cfg]
        cfgs = [dict(c) for c in cfgs if c]
        others = [c for c in cfgs if c.get("type") != "Pretrained"]
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        if others:
            initialize(self, others)
        if pretrained:
            initialize(self, pretrained)
        self._is_init = True

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f"FPN expects {len(self.in_channels)} inputs (in_channels={self.in_channels}), "
                f"got {len(inputs)}"
            )
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        used = len(laterals)
        for i in range(used - 1, 0, -1):
            if "scale_factor" in self.upsample_cfg:
                upsampled = resize(laterals[i], **self.upsample_cfg)
            else:
                upsampled = resize(laterals[i], size=laterals[i - 1].shape[2:], **self.upsample_cfg)
            laterals[i - 1] = laterals[i - 1] + upsampled
        outs = [self.fpn_convs[i](laterals[i]) for i in range(used)]
        if self.num_outs > used:
            outs.extend(self._extra_levels(inputs, laterals, outs))
        return tuple(outs)

    def _extra_levels(
        self, inputs: Sequence[torch.Tensor], laterals: list[torch.Tensor], outs: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        used = len(laterals)
        if not self.add_extra_convs:
            extra = [F.max_pool2d(outs[-1], 1, stride=2)]
            for _ in range(self.num_outs - used - 1):
                extra.append(F.max_pool2d(extra[-1], 1, stride=2))
            return extra
        source = {
            "on_input": lambda: inputs[self.backbone_end_level - 1],
            "on_lateral": lambda: laterals[-1],
            "on_output": lambda: outs[-1],
        }[self.add_extra_convs]()
        extra = [self.fpn_convs[used](source)]
        for i in range(used + 1, self.num_outs):
            prev = F.relu(extra[-1]) if self.relu_before_extra_convs else extra[-1]
            extra.append(self.fpn_convs[i](prev))
        return extra


def _check_levels(num_ins: int, num_outs: int, start_level: int, end_level: int) -> int:
    """The backbone level after the last one used, after checking the level arguments."""
    if end_level == -1:
        if num_outs < num_ins - start_level:
            raise ValueError(
                f"FPN num_outs ({num_outs}) must be >= the number of used inputs "
                f"({num_ins} - start_level {start_level})"
            )
        return num_ins
    if end_level > num_ins:
        raise ValueError(f"FPN end_level ({end_level}) must be <= the number of inputs ({num_ins})")
    if num_outs != end_level - start_level:
        raise ValueError(
            f"FPN with end_level={end_level} allows no extra level: num_outs must be "
            f"end_level - start_level = {end_level - start_level}, got {num_outs}"
        )
    return end_level


def _extra_conv_source(add_extra_convs: bool | str, extra_convs_on_inputs: bool) -> bool | str:
    if isinstance(add_extra_convs, str):
        if add_extra_convs not in EXTRA_CONV_SOURCES:
            raise ValueError(
                f"FPN add_extra_convs must be a bool or one of {EXTRA_CONV_SOURCES}, "
                f"got {add_extra_convs!r}"
            )
        return add_extra_convs
    if not isinstance(add_extra_convs, bool):
        raise TypeError(f"FPN add_extra_convs must be a bool or a str, got {add_extra_convs!r}")
    if add_extra_convs:
        return "on_input" if extra_convs_on_inputs else "on_output"
    return False
