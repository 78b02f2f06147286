"""``SegmenterMaskTransformerHead`` (`Segmenter <https://arxiv.org/abs/2105.05633>`_),
MMSegmentation 1.x.

Patch features and one learned embedding per class go through a few transformer layers
together; each pixel's logit for a class is the cosine of the two (then a LayerNorm over
the classes). Keys: ``layers.{i}.*`` (MMSegmentation's encoder layer, see
``backbones/vit_mmseg.py``), ``dec_proj``, ``cls_emb``, ``patch_proj``,
``classes_proj``, ``decoder_norm``, ``mask_norm``; no ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.vit_mmseg import SegTransformerEncoderLayer
from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers.norm import build_norm_layer
from vistra.registry import MODELS


@MODELS.register_module()
class SegmenterMaskTransformerHead(BaseDecodeHead):
    """Segmenter's mask transformer decoder over ``num_layers`` layers of ``embed_dims``."""

    def __init__(
        self,
        in_channels: int,
        num_layers: int,
        num_heads: int,
        embed_dims: int,
        mlp_ratio: int = 4,
        drop_path_rate: float = 0.1,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = True,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        init_std: float = 0.02,
        **kwargs,
    ) -> None:
        super().__init__(in_channels=in_channels, **kwargs)
        rates = np.linspace(0, drop_path_rate, num_layers).tolist()
        self.layers = nn.ModuleList(
            SegTransformerEncoderLayer(
                embed_dims=embed_dims,
                num_heads=num_heads,
                feedforward_channels=mlp_ratio * embed_dims,
                attn_drop_rate=attn_drop_rate,
                drop_rate=drop_rate,
                drop_path_rate=rate,
                num_fcs=num_fcs,
                qkv_bias=qkv_bias,
                act_cfg=act_cfg,
                norm_cfg=norm_cfg,
                batch_first=True,
            )  # fmt: skip
            for rate in rates
        )
        self.dec_proj = nn.Linear(in_channels, embed_dims)
        self.cls_emb = nn.Parameter(torch.randn(1, self.num_classes, embed_dims))
        self.patch_proj = nn.Linear(embed_dims, embed_dims, bias=False)
        self.classes_proj = nn.Linear(embed_dims, embed_dims, bias=False)
        self.decoder_norm = build_norm_layer(norm_cfg, embed_dims, postfix=1)[1]
        self.mask_norm = build_norm_layer(norm_cfg, self.num_classes, postfix=2)[1]
        self.init_std = init_std
        del self.conv_seg  # the masks are the logits

    def init_weights(self) -> None:
        if self.is_init:
            return
        nn.init.trunc_normal_(self.cls_emb, std=self.init_std)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=self.init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._is_init = True

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        b, c, h, w = x.shape
        x = self.dec_proj(x.permute(0, 2, 3, 1).reshape(b, -1, c))
        x = torch.cat((x, self.cls_emb.expand(b, -1, -1)), dim=1)
        for layer in self.layers:
            x = layer(x)
        x = self.decoder_norm(x)
        patches = F.normalize(self.patch_proj(x[:, : -self.num_classes]), dim=2, p=2)
        classes = F.normalize(self.classes_proj(x[:, -self.num_classes :]), dim=2, p=2)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))
        return masks.permute(0, 2, 1).reshape(b, -1, h, w)
