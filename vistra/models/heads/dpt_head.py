"""``DPTHead``: the decoder of `Vision Transformers for Dense Prediction
<https://arxiv.org/abs/2103.13413>`_ (DPT), MMSegmentation 1.x, over a ViT that outputs
``[feature map, class token]`` pairs (``output_cls_token=True``).

Keys:

- ``reassemble_blocks.projects.{i}.conv`` (1x1 to ``post_process_channels[i]``),
  ``reassemble_blocks.resize_layers.{0,1,3}`` (4x and 2x transposed convs, a stride-2
  3x3 conv; ``.2`` is the identity), ``reassemble_blocks.readout_projects.{i}.0`` with
  ``readout_type='project'``;
- ``convs.{i}.conv`` (3x3 to ``channels``, no bias);
- ``fusion_blocks.{i}.project.conv``, ``fusion_blocks.{i}.res_conv_unit{1,2}.conv{1,2}.conv``
  / ``.bn`` (pre-activation units; block 0 has no ``res_conv_unit1``);
- ``project.conv`` / ``project.bn``, ``conv_seg``.

Order: reassemble, residual unit, fusion block, head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS

READOUT_TYPES = ("ignore", "add", "project")


class ReassembleBlocks(BaseModule):
    """Fold the class token into every ViT output (``readout_type``: drop it, add it, or
    concatenate it to each token and project back with Linear + GELU), project each
    output to ``out_channels[i]`` and bring the four to strides 4, 8, 16 and 32 (for a
    patch-16 ViT)."""

    def __init__(
        self,
        in_channels: int = 768,
        out_channels: Sequence[int] = (96, 192, 384, 768),
        readout_type: str = "ignore",
        patch_size: int = 16,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if readout_type not in READOUT_TYPES:
            raise ValueError(f"DPT readout_type={readout_type!r}: valid: {list(READOUT_TYPES)}")
        if len(out_channels) != 4:
            raise ValueError(
                f"DPT post_process_channels needs 4 entries (one per reassembled level), got "
                f"{list(out_channels)}"
            )
        self.readout_type, self.patch_size = readout_type, patch_size
        self.projects = nn.ModuleList(
            ConvModule(in_channels, c, kernel_size=1, act_cfg=None) for c in out_channels
        )
        c = out_channels
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c[0], c[0], kernel_size=4, stride=4, padding=0),
                nn.ConvTranspose2d(c[1], c[1], kernel_size=2, stride=2, padding=0),
                nn.Identity(),
                nn.Conv2d(c[3], c[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        if readout_type == "project":
            self.readout_projects = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * in_channels, in_channels), nn.GELU())
                for _ in self.projects
            )

    def forward(self, inputs: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        outs = []
        for i, pair in enumerate(inputs):
            if isinstance(pair, torch.Tensor) or len(pair) != 2:
                raise ValueError(
                    "DPTHead needs [feature map, class token] per input: build the ViT with "
                    "output_cls_token=True"
                )
            x, cls_token = pair
            shape = x.shape
            if self.readout_type == "project":
                tokens = x.flatten(2).transpose(1, 2)
                readout = cls_token.unsqueeze(1).expand_as(tokens)
                tokens = self.readout_projects[i](torch.cat((tokens, readout), -1))
                x = tokens.transpose(1, 2).reshape(shape)
            elif self.readout_type == "add":
                x = (x.flatten(2) + cls_token.unsqueeze(-1)).reshape(shape)
            outs.append(self.resize_layers[i](self.projects[i](x)))
        return outs


class PreActResidualConvUnit(BaseModule):
    """``x + conv2(conv1(x))`` with each ConvModule in act -> conv -> norm order (no
    conv bias). The shortcut is a copy: the first activation runs in place."""

    def __init__(
        self,
        in_channels: int,
        act_cfg: dict | None,
        norm_cfg: dict | None,
        stride: int = 1,
        dilation: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        common = dict(norm_cfg=norm_cfg, act_cfg=act_cfg, bias=False, order=("act", "conv", "norm"))
        self.conv1 = ConvModule(
            in_channels, in_channels, 3, stride=stride, padding=dilation, dilation=dilation,
            **common,
        )  # fmt: skip
        self.conv2 = ConvModule(in_channels, in_channels, 3, padding=1, **common)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        shortcut = inputs.clone()
        return self.conv2(self.conv1(inputs)) + shortcut


class FeatureFusionBlock(BaseModule):
    """``x (+ unit1(skip resized bilinearly to x))`` -> unit2 -> 2x bilinear upsampling
    -> 1x1 projection (to half the channels with ``expand``)."""

    def __init__(
        self,
        in_channels: int,
        act_cfg: dict | None,
        norm_cfg: dict | None,
        expand: bool = False,
        align_corners: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.in_channels, self.expand, self.align_corners = in_channels, expand, align_corners
        self.out_channels = in_channels // 2 if expand else in_channels
        self.project = ConvModule(
            in_channels, self.out_channels, kernel_size=1, act_cfg=None, bias=True
        )
        self.res_conv_unit1: nn.Module | None = PreActResidualConvUnit(
            in_channels, act_cfg=act_cfg, norm_cfg=norm_cfg
        )
        self.res_conv_unit2 = PreActResidualConvUnit(
            in_channels, act_cfg=act_cfg, norm_cfg=norm_cfg
        )

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        if len(inputs) == 2:
            skip = inputs[1]
            if skip.shape != x.shape:
                skip = resize(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = x + self.res_conv_unit1(skip)
        x = self.res_conv_unit2(x)
        x = resize(x, scale_factor=2, mode="bilinear", align_corners=self.align_corners)
        return self.project(x)


@MODELS.register_module()
class DPTHead(BaseDecodeHead):
    """Reassemble the four ViT outputs into a pyramid, 3x3 convs to ``channels``, fuse
    them coarse to fine, a 3x3 ConvModule, ``conv_seg``. ``act_cfg`` / ``norm_cfg`` are
    the residual units' (and the last projection's norm); the base head keeps its own
    defaults, as upstream."""

    def __init__(
        self,
        embed_dims: int = 768,
        post_process_channels: Sequence[int] = (96, 192, 384, 768),
        readout_type: str = "ignore",
        patch_size: int = 16,
        expand_channels: bool = False,
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.expand_channels = expand_channels
        self.reassemble_blocks = ReassembleBlocks(
            embed_dims, post_process_channels, readout_type, patch_size
        )
        self.post_process_channels = [
            int(c * 2**i) if expand_channels else c for i, c in enumerate(post_process_channels)
        ]
        self.convs = nn.ModuleList(
            ConvModule(c, self.channels, kernel_size=3, padding=1, act_cfg=None, bias=False)
            for c in self.post_process_channels
        )
        self.fusion_blocks = nn.ModuleList(
            FeatureFusionBlock(self.channels, act_cfg, norm_cfg) for _ in self.convs
        )
        self.fusion_blocks[0].res_conv_unit1 = None  # the coarsest level has no skip input
        self.project = ConvModule(self.channels, self.channels, 3, padding=1, norm_cfg=norm_cfg)
        self.num_fusion_blocks = len(self.fusion_blocks)
        self.num_reassemble_blocks = len(self.reassemble_blocks.resize_layers)
        self.num_post_process_channels = len(self.post_process_channels)

    def forward(self, inputs: Sequence) -> torch.Tensor:
        if len(inputs) != self.num_reassemble_blocks:
            raise ValueError(
                f"DPTHead expects {self.num_reassemble_blocks} backbone outputs, got {len(inputs)}"
            )
        feats = self.reassemble_blocks(self._transform_inputs(inputs))
        feats = [conv(f) for conv, f in zip(self.convs, feats)]
        out = self.fusion_blocks[0](feats[-1])
        for i in range(1, self.num_fusion_blocks):
            out = self.fusion_blocks[i](out, feats[-(i + 1)])
        return self.cls_seg(self.project(out))
