"""``GCHead`` (`GCNet <https://arxiv.org/abs/1904.11492>`_), MMSegmentation 1.x.

An ``FCNHead`` with two convs and a global context block between them.

Keys: ``convs.{0,1}.conv``/``.bn``, ``gc_block.conv_mask`` (``pooling_type='att'``),
``gc_block.channel_add_conv.{0,1,3}``/``gc_block.channel_mul_conv.{0,1,3}`` (as
``fusion_types`` says), ``conv_cat`` (with ``concat_input``), ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vistra.models.heads.fcn_head import FCNHead
from vistra.models.layers.context_block import ContextBlock
from vistra.registry import MODELS


@MODELS.register_module()
class GCHead(FCNHead):
    """``ratio``: bottleneck width of the context transform; ``pooling_type``: ``'att'`` or
    ``'avg'``; ``fusion_types``: ``'channel_add'`` and/or ``'channel_mul'``."""

    def __init__(
        self,
        ratio: float = 1 / 4.0,
        pooling_type: str = "att",
        fusion_types: Sequence[str] = ("channel_add",),
        **kwargs,
    ) -> None:
        super().__init__(num_convs=2, **kwargs)
        self.ratio, self.pooling_type, self.fusion_types = ratio, pooling_type, fusion_types
        self.gc_block = ContextBlock(
            in_channels=self.channels,
            ratio=ratio,
            pooling_type=pooling_type,
            fusion_types=fusion_types,
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        out = self.convs[1](self.gc_block(self.convs[0](x)))
        if self.concat_input:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)
