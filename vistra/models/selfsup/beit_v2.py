"""BEiT v2's neck and head, `BEiT v2: Masked Image Modeling with Vector-Quantized Visual
Tokenizers <https://arxiv.org/abs/2208.06366>`_ (the algorithm is ``BEiT``, in
:mod:`beit_pretrain`; the tokenizer ``VQKD`` is in :mod:`vqkd`).

``BEiTV2Neck`` is the "patch aggregation" of BEiT v2: the final class token of the encoder
joined to the patch tokens of an early layer (``out_indices=[-4, -1]``) runs through
``num_layers`` more BEiT layers, so that the class token is pushed to gather the global
information the early patches lack. ``BEiTV2Head`` classifies the masked patches of both
the final and the aggregated sequences with one shared linear layer; the tokenizer's token
ids are the target. Keys (both packages): ``neck.patch_aggregation.{i}.*`` (BEiT layers),
``neck.norm``, ``head.cls_head``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from vistra.models.backbones.beit import BEiTTransformerEncoderLayer
from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.selfsup.beit_pretrain import TRUNC_NORMAL_LINEAR, masked_targets
from vistra.registry import MODELS

__all__ = ["BEiTV2Head", "BEiTV2Neck"]

_ARCHS = {
    **dict.fromkeys(
        ["b", "base"],
        dict(embed_dims=768, depth=12, num_heads=12, feedforward_channels=3072),
    ),
    **dict.fromkeys(
        ["l", "large"],
        dict(embed_dims=1024, depth=24, num_heads=16, feedforward_channels=4096),
    ),
}
_ARCH_KEYS = ("embed_dims", "depth", "num_heads", "feedforward_channels")


@MODELS.register_module()
class BEiTV2Neck(BaseModule):
    """``forward((early, final), rel_pos_bias)`` -> ``(final, aggregated)``, both normed
    by the shared ``norm`` and without their class token.

    ``backbone_arch``: ``'base'``/``'large'`` or a dict with ``embed_dims``, ``depth``,
    ``num_heads`` and ``feedforward_channels``. The stochastic-depth rates continue the
    backbone's schedule from layer ``early_layers`` on.
    """

    def __init__(
        self,
        num_layers: int = 2,
        early_layers: int = 9,
        backbone_arch: str | dict = "base",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 0.1,
        use_rel_pos_bias: bool = False,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = TRUNC_NORMAL_LINEAR,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        if isinstance(backbone_arch, str):
            if backbone_arch.lower() not in _ARCHS:
                raise ValueError(
                    f"BEiTV2Neck: backbone_arch must be one of {sorted(_ARCHS)} or a dict, "
                    f"got {backbone_arch!r}"
                )
            arch = _ARCHS[backbone_arch.lower()]
        elif isinstance(backbone_arch, dict) and set(_ARCH_KEYS) <= set(backbone_arch):
            arch = dict(backbone_arch)
        else:
            raise ValueError(
                f"BEiTV2Neck: a custom backbone_arch needs the keys {list(_ARCH_KEYS)}, got "
                f"{backbone_arch!r}"
            )
        self.arch_settings = arch
        self.early_layers = early_layers
        rates = np.linspace(0, drop_path_rate, max(arch["depth"], early_layers + num_layers))
        self.patch_aggregation = nn.ModuleList(
            BEiTTransformerEncoderLayer(
                embed_dims=arch["embed_dims"],
                num_heads=arch["num_heads"],
                feedforward_channels=arch["feedforward_channels"],
                drop_rate=drop_rate,
                drop_path_rate=float(rates[i]),
                norm_cfg=norm_cfg,
                layer_scale_init_value=layer_scale_init_value,
                window_size=None,
                use_rel_pos_bias=use_rel_pos_bias,
            )
            for i in range(early_layers, early_layers + num_layers)
        )
        # as upstream, the output projections start scaled for their depth in the network
        with torch.no_grad():
            for offset, layer in enumerate(self.patch_aggregation, start=early_layers + 1):
                layer.attn.proj.weight.div_(math.sqrt(2.0 * offset))
                layer.ffn.layers[1].weight.div_(math.sqrt(2.0 * offset))
        self.norm = build_norm_layer(norm_cfg, arch["embed_dims"])[1]

    def forward(
        self, inputs: tuple[torch.Tensor, torch.Tensor], rel_pos_bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(inputs) != 2:
            raise ValueError(
                "BEiTV2Neck takes the backbone's (early, final) outputs: give the backbone "
                f"out_indices=[-4, -1], got {len(inputs)} outputs"
            )
        early, final = inputs
        x_cls_pt = torch.cat([final[:, [0]], early[:, 1:]], dim=1)
        for layer in self.patch_aggregation:
            x_cls_pt = layer(x_cls_pt, rel_pos_bias=rel_pos_bias)
        return self.norm(final)[:, 1:], self.norm(x_cls_pt)[:, 1:]


@MODELS.register_module()
class BEiTV2Head(BaseModule):
    """One linear ``cls_head`` over the masked patches of the neck's two outputs; the loss
    (``CrossEntropyLoss`` or MMSelfSup's ``BEiTLoss``) of each against the tokenizer's
    token ids: ``(loss_1, loss_2)``. ``forward`` is the same."""

    def __init__(
        self,
        embed_dims: int,
        num_embed: int,
        loss: dict,
        init_cfg: dict | list[dict] | None = TRUNC_NORMAL_LINEAR,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.cls_head = nn.Linear(embed_dims, num_embed)
        self.loss_module = MODELS.build(loss, key_path="model.head.loss")

    def loss(
        self,
        feats: torch.Tensor,
        feats_cls_pt: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask, target = masked_targets(target, mask)
        loss_1 = self.loss_module(self.cls_head(feats[mask]), target)
        loss_2 = self.loss_module(self.cls_head(feats_cls_pt[mask]), target)
        return loss_1, loss_2

    forward = loss
