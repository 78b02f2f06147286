"""``SETRUPHead``: the naive and progressive-upsampling (PUP) decoders of `SETR
<https://arxiv.org/abs/2012.15840>`_, MMSegmentation 1.x.

Keys: ``norm`` (a LayerNorm over the channels of every input token), ``up_convs.{i}.0.conv``
(+ ``.bn`` etc.; ``up_convs.{i}.1`` is a parameter-free bilinear upsampler), ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.utils.seg_utils import Upsample
from vistra.registry import MODELS


@MODELS.register_module()
class SETRUPHead(BaseDecodeHead):
    """Token LayerNorm, then ``num_convs`` x (conv ``kernel_size`` + ``up_scale`` x bilinear
    upsampling), then ``conv_seg``. Naive: ``num_convs=2, kernel_size=1``-style configs;
    PUP: ``num_convs=4, up_scale=2``. Takes a single input (``in_channels`` an int)."""

    def __init__(
        self,
        norm_layer: dict = dict(type="LN", eps=1e-6, requires_grad=True),  # noqa: B006 (never mutated)
        num_convs: int = 1,
        up_scale: int = 4,
        kernel_size: int = 3,
        init_cfg: dict | list[dict] | None = [  # noqa: B006 (copied by BaseModule)
            dict(type="Constant", val=1.0, bias=0, layer="LayerNorm"),
            dict(type="Normal", std=0.01, override=dict(name="conv_seg")),
        ],
        **kwargs,
    ) -> None:
        if kernel_size not in (1, 3):
            raise ValueError(f"SETRUPHead kernel_size must be 1 or 3, got {kernel_size!r}")
        super().__init__(init_cfg=init_cfg, **kwargs)
        if not isinstance(self.in_channels, int):
            raise ValueError(
                f"SETRUPHead takes a single input: in_channels must be an int, got "
                f"{self.in_channels!r}"
            )
        _, self.norm = build_norm_layer(norm_layer, self.in_channels)
        self.up_convs = nn.ModuleList()
        channels = self.in_channels
        for _ in range(num_convs):
            self.up_convs.append(
                nn.Sequential(
                    ConvModule(
                        channels,
                        self.channels,
                        kernel_size,
                        stride=1,
                        padding=(kernel_size - 1) // 2,
                        norm_cfg=self.norm_cfg,
                        act_cfg=self.act_cfg,
                    ),  # fmt: skip
                    Upsample(
                        scale_factor=up_scale, mode="bilinear", align_corners=self.align_corners
                    ),
                )
            )
            channels = self.channels

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        x = self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(x.shape).contiguous()
        for up_conv in self.up_convs:
            x = up_conv(x)
        return self.cls_seg(x)
