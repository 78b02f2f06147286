"""``OCRHead`` (`Object-Contextual Representations <https://arxiv.org/abs/1909.11065>`_),
MMSegmentation 1.x.

The second stage of a ``CascadeEncoderDecoder``: the first stage's coarse logits
(``prev_output``) softly gather one context vector per class from the features
(``SpatialGatherModule``); every pixel then attends to those class vectors
(``ObjectAttentionBlock``, a :class:`SelfAttentionBlock`) and the result is classified.

Keys: ``bottleneck`` (3x3 ConvModule, ``in_channels -> channels``),
``object_context_block.{key_project,query_project}.{0,1}``, ``.value_project``,
``.out_project`` (ConvModules) and ``object_context_block.bottleneck``; ``conv_seg``.
``spatial_gather_module`` has no parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.heads.decode_head import BaseCascadeDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.layers.self_attention_block import SelfAttentionBlock
from vistra.registry import MODELS


class SpatialGatherModule(nn.Module):
    """One context vector per class: the features averaged with each class's softmax (over
    positions) of ``scale * probs`` as weights. Output ``(N, C, K, 1)``."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        n, k = probs.shape[:2]
        probs = F.softmax(self.scale * probs.reshape(n, k, -1), dim=2)  # N, K, HW
        feats = feats.reshape(n, feats.size(1), -1).permute(0, 2, 1)  # N, HW, C
        return torch.matmul(probs, feats).permute(0, 2, 1).contiguous().unsqueeze(3)


class ObjectAttentionBlock(SelfAttentionBlock):
    """Pixels (query) attend to the class context vectors (key/value); the attended context
    is concatenated with the pixel features and fused by a 1x1 ``bottleneck``."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        scale: float,
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
            query_downsample=nn.MaxPool2d(kernel_size=scale) if scale > 1 else None,
            key_downsample=None,
            key_query_num_convs=2,
            key_query_norm=True,
            value_out_num_convs=1,
            value_out_norm=True,
            matmul_norm=True,
            with_out=True,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
        )
        self.bottleneck = ConvModule(
            in_channels * 2, in_channels, 1,
            conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
        )  # fmt: skip

    def forward(self, query_feats: torch.Tensor, key_feats: torch.Tensor) -> torch.Tensor:
        if self.query_downsample is not None:
            # Upstream builds this path but its forward cannot run (the context is reshaped
            # to the un-pooled size, then resized without a size); fail clearly instead.
            raise NotImplementedError(
                "OCRHead scale > 1 is not supported (MMSegmentation's forward fails there "
                "too); use scale=1"
            )
        context = super().forward(query_feats, key_feats)
        return self.bottleneck(torch.cat([context, query_feats], dim=1))


@MODELS.register_module()
class OCRHead(BaseCascadeDecodeHead):
    """OCR head: ``ocr_channels`` wide key/query projections; ``scale`` sharpens the class
    probabilities before gathering (only ``scale=1`` runs, as upstream)."""

    def __init__(self, ocr_channels: int, scale: float = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ocr_channels, self.scale = ocr_channels, scale
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        # Registration order fixes the state_dict order: context block before bottleneck.
        self.object_context_block = ObjectAttentionBlock(
            self.channels, ocr_channels, scale, **common
        )
        self.spatial_gather_module = SpatialGatherModule(scale)
        self.bottleneck = ConvModule(self.in_channels, self.channels, 3, padding=1, **common)

    def forward(self, inputs: Sequence[torch.Tensor], prev_output: torch.Tensor) -> torch.Tensor:
        feats = self.bottleneck(self._transform_inputs(inputs))
        context = self.spatial_gather_module(feats, prev_output)
        return self.cls_seg(self.object_context_block(feats, context))
