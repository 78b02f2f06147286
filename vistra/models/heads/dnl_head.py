"""``DNLHead`` (`DNLNet <https://arxiv.org/abs/2006.06668>`_), MMSegmentation 1.x.

An ``FCNHead`` with two convs and a disentangled non-local block between them: the
pairwise term is computed on whitened (mean-subtracted) queries and keys, with a
temperature, and a unary term (a softmax mask over the pixels, ``conv_mask``) is added.

Keys: ``convs.{0,1}.conv``/``.bn``, ``dnl_block.{g,theta,phi}.conv``,
``dnl_block.conv_out.conv``/``.bn``, ``dnl_block.conv_mask``, ``conv_cat`` (with
``concat_input``), ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.fcn_head import FCNHead
from vistra.models.layers.non_local import NonLocal2d
from vistra.registry import MODELS


class DisentangledNonLocal2d(NonLocal2d):
    """``NonLocal2d`` with whitened pairwise attention (divided by ``temperature`` in
    ``'embedded_gaussian'`` mode) plus a unary global term."""

    def __init__(self, *args, temperature: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        self.conv_mask = nn.Conv2d(self.in_channels, 1, kernel_size=1)

    def embedded_gaussian(self, theta_x: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
        weight = torch.matmul(theta_x, phi_x)
        if self.use_scale:
            weight = weight / theta_x.shape[-1] ** 0.5
        return (weight / self.temperature).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g_x, theta_x, phi_x = self.project(x)
        if self.mode == "gaussian":
            # Here theta_x is a view of x, which MMSegmentation whitens in place: the
            # residual and the unary mask below then see the whitened x too.
            x = x - x.mean(dim=(2, 3), keepdim=True)
            theta_x = x.view(n, self.in_channels, -1).permute(0, 2, 1)
            if not self.sub_sample:
                phi_x = x.view(n, self.in_channels, -1)
        else:
            theta_x = theta_x - theta_x.mean(dim=-2, keepdim=True)
        phi_x = phi_x - phi_x.mean(dim=-1, keepdim=True)
        y = self.aggregate(self.pairwise(theta_x, phi_x), g_x, x)
        unary = self.conv_mask(x).view(n, 1, -1).softmax(dim=-1)  # N, 1, HW
        unary_x = torch.matmul(unary, g_x).permute(0, 2, 1).reshape(n, self.inter_channels, 1, 1)
        return x + self.conv_out(y + unary_x)


@MODELS.register_module()
class DNLHead(FCNHead):
    """``reduction``, ``use_scale``, ``mode`` as ``NLHead``; ``temperature`` sharpens the
    pairwise softmax."""

    def __init__(
        self,
        reduction: int = 2,
        use_scale: bool = True,
        mode: str = "embedded_gaussian",
        temperature: float = 0.05,
        **kwargs,
    ) -> None:
        super().__init__(num_convs=2, **kwargs)
        self.reduction, self.use_scale, self.mode = reduction, use_scale, mode
        self.temperature = temperature
        self.dnl_block = DisentangledNonLocal2d(
            in_channels=self.channels,
            reduction=reduction,
            use_scale=use_scale,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            mode=mode,
            temperature=temperature,
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        out = self.convs[1](self.dnl_block(self.convs[0](x)))
        if self.concat_input:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)
