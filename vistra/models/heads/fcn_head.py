"""``FCNHead`` (`FCN <https://arxiv.org/abs/1411.4038>`_), MMSegmentation 1.x.

Keys: ``convs.{i}.conv``/``convs.{i}.bn``, ``conv_cat`` (with ``concat_input``), ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.registry import MODELS


@MODELS.register_module()
class FCNHead(BaseDecodeHead):
    """``num_convs`` convs (``kernel_size``, ``dilation``), optionally concatenated with the
    input and fused by ``conv_cat``. ``num_convs=0`` passes the input through, which then
    needs ``in_channels == channels``."""

    def __init__(
        self,
        num_convs: int = 2,
        kernel_size: int = 3,
        concat_input: bool = True,
        dilation: int = 1,
        **kwargs,
    ) -> None:
        if num_convs < 0:
            raise ValueError(f"FCNHead num_convs must be >= 0, got {num_convs}")
        if not isinstance(dilation, int) or dilation <= 0:
            raise ValueError(f"FCNHead dilation must be a positive int, got {dilation!r}")
        self.num_convs, self.concat_input, self.kernel_size = num_convs, concat_input, kernel_size
        super().__init__(**kwargs)
        if num_convs == 0 and self.in_channels != self.channels:
            raise ValueError(
                f"FCNHead with num_convs=0 needs in_channels == channels, got "
                f"{self.in_channels} and {self.channels}"
            )
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        padding = (kernel_size // 2) * dilation
        convs = [
            ConvModule(
                self.in_channels if i == 0 else self.channels,
                self.channels,
                kernel_size,
                padding=padding,
                dilation=dilation,
                **common,
            )
            for i in range(num_convs)
        ]
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        if concat_input:
            self.conv_cat = ConvModule(
                self.in_channels + self.channels, self.channels, kernel_size,
                padding=kernel_size // 2, **common,
            )  # fmt: skip

    def _forward_feature(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Features before ``cls_seg``."""
        x = self._transform_inputs(inputs)
        feats = self.convs(x)
        if self.concat_input:
            feats = self.conv_cat(torch.cat([x, feats], dim=1))
        return feats

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self._forward_feature(inputs))
