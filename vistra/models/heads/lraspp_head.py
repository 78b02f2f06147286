"""``LRASPPHead``: the Lite R-ASPP head of `MobileNetV3 <https://arxiv.org/abs/1905.02244>`_,
MMSegmentation 1.x.

Keys: ``aspp_conv.conv``/``.bn``, ``image_pool.1.conv`` (with bias, no norm; index 0 is the
pooling), ``conv_up_input`` (plain conv), ``convs.conv{i}`` (plain 1x1 convs, no bias),
``conv_ups.conv_up{i}.conv``/``.bn``, ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


@MODELS.register_module()
class LRASPPHead(BaseDecodeHead):
    """The deepest input, gated by a sigmoid of its pooled context, then merged top-down
    with each shallower input projected to ``branch_channels[i]``.

    Needs ``input_transform='multiple_select'`` and one more input than
    ``branch_channels``. The context pooling is a fixed 49x49 average pool with stride
    (16, 20), as upstream writes it, so the deepest feature map must be at least 49x49
    (an input of at least 392x392 at output stride 8).
    """

    def __init__(self, branch_channels: Sequence[int] = (32, 64), **kwargs) -> None:
        super().__init__(**kwargs)
        if self.input_transform != "multiple_select":
            raise ValueError(
                f"LRASPPHead needs input_transform='multiple_select', got {self.input_transform!r}"
            )
        if not isinstance(branch_channels, (list, tuple)) or not all(
            isinstance(c, int) for c in branch_channels
        ):
            raise TypeError(f"LRASPPHead branch_channels must be ints, got {branch_channels!r}")
        if len(branch_channels) != len(self.in_channels) - 1:
            raise ValueError(
                f"LRASPPHead branch_channels={tuple(branch_channels)} needs one entry fewer "
                f"than in_channels={tuple(self.in_channels)}"
            )
        self.branch_channels = tuple(branch_channels)
        self.convs = nn.Sequential()
        self.conv_ups = nn.Sequential()
        for i, branch in enumerate(self.branch_channels):
            self.convs.add_module(f"conv{i}", nn.Conv2d(self.in_channels[i], branch, 1, bias=False))
            self.conv_ups.add_module(
                f"conv_up{i}",
                ConvModule(
                    self.channels + branch, self.channels, 1, norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg, bias=False,
                ),
            )  # fmt: skip
        self.conv_up_input = nn.Conv2d(self.channels, self.channels, 1)
        self.aspp_conv = ConvModule(
            self.in_channels[-1], self.channels, 1, norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg, bias=False,
        )  # fmt: skip
        # upstream takes in_channels[2] here (the last input in its only config)
        self.image_pool = nn.Sequential(
            nn.AvgPool2d(kernel_size=49, stride=(16, 20)),
            ConvModule(
                self.in_channels[2], self.channels, 1, act_cfg=dict(type="Sigmoid"), bias=False
            ),
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        feats = self._transform_inputs(inputs)
        x = feats[-1]
        gate = resize(
            self.image_pool(x), x.shape[2:], mode="bilinear", align_corners=self.align_corners
        )
        x = self.conv_up_input(self.aspp_conv(x) * gate)
        for i in reversed(range(len(self.branch_channels))):
            x = resize(x, feats[i].shape[2:], mode="bilinear", align_corners=self.align_corners)
            x = self.conv_ups[i](torch.cat([x, self.convs[i](feats[i])], dim=1))
        return self.cls_seg(x)
