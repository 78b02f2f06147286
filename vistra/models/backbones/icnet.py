"""``ICNet`` (`ICNet for Real-Time Semantic Segmentation on High-Resolution Images
<https://arxiv.org/abs/1704.08545>`_), MMSegmentation 1.x: the three-branch backbone.

- sub1: three stride-2 ConvModules on the full image (1/8);
- sub2: the ResNet of ``backbone_cfg`` (stem, a ceil-mode max pool, ``layer1``-``layer2``)
  on the image halved (1/16 of the input), then a 1x1 conv;
- sub4: that map halved again through ``layer3``-``layer4``, a pyramid pooling module and
  a bottleneck, then a 1x1 conv (1/32 with the dilated ``d8`` ResNets).

The neck (``ICNeck``) fuses the three.

Keys: ``backbone.*`` (the ResNet; its ``maxpool`` has no parameters), ``psp_modules.{i}.1``,
``psp_bottleneck``, ``conv_sub1.{0,1,2}``, ``conv_sub2``, ``conv_sub4``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.heads.psp_head import PPM
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


@MODELS.register_module()
class ICNet(BaseModule):
    """``layer_channels``: the widths of the ResNet's ``layer2`` and ``layer4`` outputs;
    ``out_channels``: the three branches' outputs (sub1, sub2, sub4). ``init_cfg=None``
    means Kaiming (fan-out) convs, unit norms and ``Normal(mean=0.01)`` linears."""

    def __init__(
        self,
        backbone_cfg: dict,
        in_channels: int = 3,
        layer_channels: Sequence[int] = (512, 2048),
        light_branch_middle_channels: int = 32,
        psp_out_channels: int = 512,
        out_channels: Sequence[int] = (64, 256, 256),
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        align_corners: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if backbone_cfg is None:
            raise TypeError("ICNet needs backbone_cfg (a ResNet config, e.g. type='ResNetV1c')")
        if len(layer_channels) != 2:
            raise ValueError(f"layer_channels must have 2 entries, got {tuple(layer_channels)!r}")
        if len(out_channels) != 3:
            raise ValueError(f"out_channels must have 3 entries, got {tuple(out_channels)!r}")
        if init_cfg is None:
            init_cfg = [
                dict(type="Kaiming", mode="fan_out", layer="Conv2d"),
                dict(type="Constant", val=1, layer="_BatchNorm"),
                dict(type="Normal", mean=0.01, layer="Linear"),
            ]
        super().__init__(init_cfg)
        self.align_corners = align_corners
        self.backbone = MODELS.build(backbone_cfg, key_path="backbone_cfg")
        for name in ("maxpool", "layer1", "layer2", "layer3", "layer4"):
            if not hasattr(self.backbone, name):
                raise TypeError(
                    f"ICNet's backbone_cfg must build a ResNet (stem, maxpool, layer1..layer4); "
                    f"{type(self.backbone).__name__} has no {name!r}"
                )
        # ICNet pools with ceil_mode, unlike the ResNet
        self.backbone.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.psp_modules = PPM(
            pool_scales,
            layer_channels[1],
            psp_out_channels,
            act_cfg=act_cfg,
            align_corners=align_corners,
            **common,
        )
        self.psp_bottleneck = ConvModule(
            layer_channels[1] + len(pool_scales) * psp_out_channels,
            psp_out_channels,
            3,
            padding=1,
            act_cfg=act_cfg,
            **common,
        )
        # the light branch and the 1x1 projections keep ConvModule's default ReLU
        mid = light_branch_middle_channels
        down = dict(stride=2, padding=1, **common)
        self.conv_sub1 = nn.Sequential(
            ConvModule(in_channels, mid, 3, **down),
            ConvModule(mid, mid, 3, **down),
            ConvModule(mid, out_channels[0], 3, **down),
        )
        self.conv_sub2 = ConvModule(layer_channels[0], out_channels[1], 1, **common)
        self.conv_sub4 = ConvModule(psp_out_channels, out_channels[2], 1, **common)

    def _half(self, x: torch.Tensor) -> torch.Tensor:
        return resize(x, scale_factor=0.5, mode="bilinear", align_corners=self.align_corners)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out_sub1 = self.conv_sub1(x)
        bb = self.backbone
        x = bb._stem(self._half(x)) if hasattr(bb, "_stem") else bb.stem(self._half(x))
        x = bb.layer2(bb.layer1(bb.maxpool(x)))
        out_sub2 = self.conv_sub2(x)
        x = bb.layer4(bb.layer3(self._half(x)))
        # upstream concatenates the pooled maps first, the input last (PSPHead: the reverse)
        x = self.psp_bottleneck(torch.cat([*self.psp_modules(x), x], dim=1))
        return [out_sub1, out_sub2, self.conv_sub4(x)]
