"""``NLHead`` (`NLNet <https://arxiv.org/abs/1711.07971>`_), MMSegmentation 1.x.

An ``FCNHead`` with two convs and a non-local block between them.

Keys: ``convs.{0,1}.conv``/``.bn``, ``nl_block.{g,theta,phi}.conv``, ``nl_block.conv_out.conv``
/``.bn``, ``nl_block.concat_project.conv`` (``mode='concatenation'``), ``conv_cat`` (with
``concat_input``), ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vistra.models.heads.fcn_head import FCNHead
from vistra.models.layers.non_local import NonLocal2d
from vistra.registry import MODELS


@MODELS.register_module()
class NLHead(FCNHead):
    """``reduction``: channel reduction of the projections; ``use_scale``: divide the
    embedded-gaussian energies by ``sqrt(inter_channels)``; ``mode``: the pairwise function
    (``'embedded_gaussian'``, ``'dot_product'``, ``'gaussian'``, ``'concatenation'``)."""

    def __init__(
        self,
        reduction: int = 2,
        use_scale: bool = True,
        mode: str = "embedded_gaussian",
        **kwargs,
    ) -> None:
        super().__init__(num_convs=2, **kwargs)
        self.reduction, self.use_scale, self.mode = reduction, use_scale, mode
        self.nl_block = NonLocal2d(
            in_channels=self.channels,
            reduction=reduction,
            use_scale=use_scale,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            mode=mode,
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        out = self.convs[1](self.nl_block(self.convs[0](x)))
        if self.concat_input:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)
