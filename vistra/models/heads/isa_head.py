"""``ISAHead`` (`Interlaced Sparse Self-Attention <https://arxiv.org/abs/1907.12273>`_),
MMSegmentation 1.x.

Full self-attention factorised in two: a global relation among positions that are
``down_factor`` apart (one sparse group per offset inside a local window), then a local
relation inside each ``down_factor`` window. A map that does not divide is zero-padded
(split evenly, the extra pixel at the bottom/right) and cropped back afterwards.

Keys: ``in_conv`` (3x3), ``global_relation`` / ``local_relation`` (each
``key_project.{0,1}``, ``query_project.{0,1}`` ConvModules, ``value_project`` plain conv,
``output_project`` ConvModule), ``out_conv`` (1x1), ``conv_seg``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.layers.self_attention_block import SelfAttentionBlock as _SelfAttentionBlock
from vistra.registry import MODELS


class SelfAttentionBlock(_SelfAttentionBlock):
    """ISA's self-attention: no out projection inside the block, a ConvModule
    ``output_project`` after it."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> None:
        super().__init__(
            key_in_channels=in_channels,
            query_in_channels=in_channels,
            channels=channels,
            out_channels=in_channels,
            share_key_query=False,
            query_downsample=None,
            key_downsample=None,
            key_query_num_convs=2,
            key_query_norm=True,
            value_out_num_convs=1,
            value_out_norm=False,
            matmul_norm=True,
            with_out=False,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
        )
        self.output_project = self.build_project(
            in_channels, in_channels, num_convs=1, use_conv_module=True,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.output_project(super().forward(x, x))


@MODELS.register_module()
class ISAHead(BaseDecodeHead):
    """ISA head.

    Args:
        isa_channels: key/query width of both relations.
        down_factor: ``(h, w)`` size of a local group.
    """

    def __init__(self, isa_channels: int, down_factor: Sequence[int] = (8, 8), **kwargs) -> None:
        super().__init__(**kwargs)
        if len(down_factor) != 2 or any(int(f) < 1 for f in down_factor):
            raise ValueError(f"ISAHead down_factor must be two positive ints, got {down_factor!r}")
        self.down_factor = down_factor
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.in_conv = ConvModule(self.in_channels, self.channels, 3, padding=1, **common)
        self.global_relation = SelfAttentionBlock(self.channels, isa_channels, **common)
        self.local_relation = SelfAttentionBlock(self.channels, isa_channels, **common)
        self.out_conv = ConvModule(self.channels * 2, self.channels, 1, **common)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.in_conv(self._transform_inputs(inputs))
        residual = x
        n, c, h, w = x.shape
        loc_h, loc_w = self.down_factor
        glb_h, glb_w = math.ceil(h / loc_h), math.ceil(w / loc_w)
        pad_h, pad_w = glb_h * loc_h - h, glb_w * loc_w - w
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        # global groups: same offset inside every local window
        x = x.view(n, c, glb_h, loc_h, glb_w, loc_w).permute(0, 3, 5, 1, 2, 4)
        x = self.global_relation(x.reshape(-1, c, glb_h, glb_w))
        # local groups: one window each
        x = x.view(n, loc_h, loc_w, c, glb_h, glb_w).permute(0, 4, 5, 3, 1, 2)
        x = self.local_relation(x.reshape(-1, c, loc_h, loc_w))
        # back to (n, c, H, W)
        x = x.view(n, glb_h, glb_w, c, loc_h, loc_w).permute(0, 3, 1, 4, 2, 5)
        x = x.reshape(n, c, glb_h * loc_h, glb_w * loc_w)
        if pad_h > 0 or pad_w > 0:
            x = x[:, :, pad_h // 2 : pad_h // 2 + h, pad_w // 2 : pad_w // 2 + w]
        return self.cls_seg(self.out_conv(torch.cat([x, residual], dim=1)))
