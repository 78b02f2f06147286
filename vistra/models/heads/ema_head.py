"""``EMAHead`` (`EMANet <https://arxiv.org/abs/1907.13426>`_), MMSegmentation 1.x.

Keys: ``ema_module.bases`` (a buffer ``(1, ema_channels, num_bases)``), ``ema_in_conv``,
``ema_mid_conv.conv`` (frozen, no norm), ``ema_out_conv``, ``bottleneck``, ``conv_cat``
(with ``concat_input``), ``conv_seg``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.registry import MODELS


def _mean_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over the distributed processes (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor.div_(dist.get_world_size()), op=dist.ReduceOp.SUM)
    return tensor


class EMAModule(nn.Module):
    """Expectation-maximisation attention: ``num_stages`` EM iterations (without gradients)
    refine ``num_bases`` bases from the shared ``bases`` buffer, and the features are
    reconstructed from them. In training the buffer follows the batch's bases as a moving
    average (``momentum``), averaged over the processes."""

    def __init__(self, channels: int, num_bases: int, num_stages: int, momentum: float) -> None:
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"EMAModule num_stages must be at least 1, got {num_stages}")
        self.num_bases, self.num_stages, self.momentum = num_bases, num_stages, momentum
        bases = torch.zeros(1, channels, num_bases).normal_(0, math.sqrt(2.0 / num_bases))
        self.register_buffer("bases", F.normalize(bases, dim=1, p=2))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        n, c, h, w = feats.shape
        feats = feats.view(n, c, h * w)
        bases = self.bases.repeat(n, 1, 1)
        with torch.no_grad():
            for _ in range(self.num_stages):
                attention = F.softmax(torch.einsum("bcn,bck->bnk", feats, bases), dim=2)
                attention_normed = F.normalize(attention, dim=1, p=1)
                bases = F.normalize(
                    torch.einsum("bcn,bnk->bck", feats, attention_normed), dim=1, p=2
                )
        recon = torch.einsum("bck,bnk->bcn", bases, attention).view(n, c, h, w)
        if self.training:
            new = F.normalize(_mean_over_processes(bases.mean(dim=0, keepdim=True)), dim=1, p=2)
            self.bases = (1 - self.momentum) * self.bases + self.momentum * new
        return recon


@MODELS.register_module()
class EMAHead(BaseDecodeHead):
    """``ema_in_conv`` (3x3 to ``ema_channels``), a frozen 1x1 ``ema_mid_conv``, the EM
    attention, ``ema_out_conv`` and a residual ReLU; then the 3x3 ``bottleneck`` to
    ``channels`` and, with ``concat_input``, ``conv_cat`` over the input and that."""

    def __init__(
        self,
        ema_channels: int,
        num_bases: int,
        num_stages: int,
        concat_input: bool = True,
        momentum: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.ema_channels, self.num_bases, self.num_stages = ema_channels, num_bases, num_stages
        self.concat_input, self.momentum = concat_input, momentum
        self.ema_module = EMAModule(ema_channels, num_bases, num_stages, momentum)
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.ema_in_conv = ConvModule(self.in_channels, ema_channels, 3, padding=1, **common)
        self.ema_mid_conv = ConvModule(
            ema_channels, ema_channels, 1, conv_cfg=self.conv_cfg, norm_cfg=None, act_cfg=None
        )
        # MMSegmentation freezes the projection into the EM space
        for param in self.ema_mid_conv.parameters():
            param.requires_grad = False
        self.ema_out_conv = ConvModule(
            ema_channels, ema_channels, 1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
            act_cfg=None,
        )  # fmt: skip
        self.bottleneck = ConvModule(ema_channels, self.channels, 3, padding=1, **common)
        if concat_input:
            self.conv_cat = ConvModule(
                self.in_channels + self.channels, self.channels, 3, padding=1, **common
            )

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        identity = self.ema_in_conv(x)
        recon = F.relu(self.ema_module(self.ema_mid_conv(identity)))
        out = F.relu(identity + self.ema_out_conv(recon))
        out = self.bottleneck(out)
        if self.concat_input:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)
