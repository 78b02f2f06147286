"""``MultiLevelNeck`` of MMSegmentation 1.x: the neck that turns a plain ViT's single-stride
feature maps into a pyramid for UPerHead (`SETR <https://arxiv.org/abs/2012.15840>`_ /
the MMSegmentation ViT configs).

Keys: ``lateral_convs.{i}.conv`` (1x1, one per input), ``convs.{i}.conv`` (3x3, one per
output scale), plus ``.bn``/``.ln`` etc. with a ``norm_cfg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


@MODELS.register_module()
class MultiLevelNeck(BaseModule):
    """Each input goes through a 1x1 lateral conv, is rescaled bilinearly by ``scales[i]``
    and refined by a 3x3 conv. A single input is shared by every output scale."""

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        scales: Sequence[float] = (0.5, 1, 2, 4),
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, (list, tuple)):
            raise TypeError(f"MultiLevelNeck in_channels must be a list, got {in_channels!r}")
        self.in_channels, self.out_channels = list(in_channels), out_channels
        self.scales = list(scales)
        self.num_outs = len(self.scales)
        if len(self.in_channels) not in (1, self.num_outs):
            raise ValueError(
                f"MultiLevelNeck needs one input or one per scale: in_channels "
                f"{self.in_channels}, scales {self.scales}"
            )
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for c in self.in_channels
        )
        self.convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for _ in range(self.num_outs)
        )

    def init_weights(self) -> None:
        """Xavier-uniform on every conv, MMSegmentation's own ``init_weights`` (it replaces
        the ConvModules' Kaiming init, which upstream runs at construction)."""
        from vistra.models.init import xavier_init  # torch-heavy; imported when used

        if self.is_init:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                xavier_init(m, distribution="uniform")
        self._is_init = True

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f"MultiLevelNeck expects {len(self.in_channels)} inputs "
                f"(in_channels={self.in_channels}), got {len(inputs)}"
            )
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        if len(laterals) == 1:
            laterals = laterals * self.num_outs
        return tuple(
            conv(resize(laterals[i], scale_factor=self.scales[i], mode="bilinear"))
            for i, conv in enumerate(self.convs)
        )
