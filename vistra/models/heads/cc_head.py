"""``CCHead`` (`CCNet <https://arxiv.org/abs/1811.11721>`_), MMSegmentation 1.x.

An ``FCNHead`` with two convs and ``recurrence`` passes of one criss-cross attention
module between them.

Keys: ``convs.{0,1}.conv``/``.bn``, ``cca.{query_conv,key_conv,value_conv}``,
``cca.gamma.scale``, ``conv_cat`` (with ``concat_input``), ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vistra.models.heads.fcn_head import FCNHead
from vistra.models.layers.cc_attention import CrissCrossAttention
from vistra.registry import MODELS


@MODELS.register_module()
class CCHead(FCNHead):
    """``recurrence`` (default 2: every pixel then sees the whole map) criss-cross
    attention passes, sharing one module's weights."""

    def __init__(self, recurrence: int = 2, **kwargs) -> None:
        if not isinstance(recurrence, int) or recurrence < 0:
            raise ValueError(f"CCHead recurrence must be an int >= 0, got {recurrence!r}")
        super().__init__(num_convs=2, **kwargs)
        self.recurrence = recurrence
        self.cca = CrissCrossAttention(self.channels)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        out = self.convs[0](x)
        for _ in range(self.recurrence):
            out = self.cca(out)
        out = self.convs[1](out)
        if self.concat_input:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)
