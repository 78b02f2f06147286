"""MMSegmentation's MAE backbone (registry scope ``mmseg``): the ViT of `Masked
Autoencoders Are Scalable Vision Learners <https://arxiv.org/abs/2111.06377>`__, fine-tuned
for segmentation, built as a variant of MMSegmentation's BEiT (``beit_mmseg.py``).

Not vistra's self-supervised ``MAE`` algorithm (registered plainly under the same name):
MMSegmentation configs set ``default_scope='mmseg'``, so this one is found there.

Differences from BEiT, all upstream's: an absolute ``pos_embed`` (``(1, Wh*Ww + 1, C)``,
added without resizing, so the input must give the ``img_size // patch_size`` grid), one
``qkv`` bias instead of ``q_bias`` / ``v_bias``, the relative position tables start (and
stay, on default init) at zero, and the default init divides each layer's ``attn.proj``
and ``ffn.layers.1`` weights by ``sqrt(2 * layer_id)``. Keys: BEiT's plus ``pos_embed``,
with ``layers.{i}.attn.qkv.bias`` in place of ``q_bias`` / ``v_bias``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.beit_mmseg import (
    BEiTAttention,
    BEiTTransformerEncoderLayer,
    SegBEiT,
)
from vistra.registry import MODELS

logger = logging.getLogger(__name__)


class MAEAttention(BEiTAttention):
    """BEiT's attention whose relative position table keeps its zero start on init."""

    def init_weights(self) -> None:
        self._is_init = True


class MAETransformerEncoderLayer(BEiTTransformerEncoderLayer):
    attention_class = MAEAttention


@MODELS.register_module(name="MAE", scope="mmseg")
class SegMAE(SegBEiT):
    """MMSegmentation's ``MAE``; BEiT's arguments less ``qv_bias`` (the ``qkv`` layer
    always has its own bias)."""

    layer_class = MAETransformerEncoderLayer

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dims: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        out_indices: int | Sequence[int] = -1,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        patch_norm: bool = False,
        final_norm: bool = False,
        num_fcs: int = 2,
        norm_eval: bool = False,
        pretrained: str | None = None,
        init_values: float = 0.1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_channels=in_channels,
            embed_dims=embed_dims, num_layers=num_layers, num_heads=num_heads,
            mlp_ratio=mlp_ratio, out_indices=out_indices, qv_bias=False,
            attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate, norm_cfg=norm_cfg,
            act_cfg=act_cfg, patch_norm=patch_norm, final_norm=final_norm, num_fcs=num_fcs,
            norm_eval=norm_eval, pretrained=pretrained, init_values=init_values,
            init_cfg=init_cfg,
        )  # fmt: skip
        self.num_patches = self.patch_shape[0] * self.patch_shape[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dims))

    def _qkv_bias(self) -> bool | str:
        return True

    def _base_init(self) -> None:
        super()._base_init()
        # BEiT's depth rescaling of the residual projections (upstream's fix_init_weight)
        for layer_id, layer in enumerate(self.layers, start=1):
            with torch.no_grad():
                layer.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
                layer.ffn.layers[1].weight.div_(math.sqrt(2.0 * layer_id))

    def _embed(self, inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x, hw = super()._embed(inputs)
        if x.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"MAE: pos_embed is sized for a {self.patch_shape[0]}x{self.patch_shape[1]} "
                f"patch grid, the input gives {hw[0]}x{hw[1]}; set img_size to the input size"
            )
        return x + self.pos_embed, hw

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        # a pretrained square pos_embed of another grid is resized bicubically (upstream)
        key = prefix + "pos_embed"
        ckpt = state_dict.get(key)
        if isinstance(ckpt, torch.Tensor) and ckpt.shape != self.pos_embed.shape:
            extra = self.pos_embed.shape[-2] - self.num_patches
            orig = int((ckpt.shape[-2] - extra) ** 0.5)
            new = int(self.num_patches**0.5)
            if orig != new:
                logger.info("Resize the pos_embed from a %dx%d to a %dx%d grid.", orig, orig,
                            new, new)  # fmt: skip
                tokens = ckpt[:, extra:].reshape(-1, orig, orig, ckpt.shape[-1]).permute(0, 3, 1, 2)
                tokens = F.interpolate(tokens, size=(new, new), mode="bicubic", align_corners=False)
                state_dict[key] = torch.cat(
                    (ckpt[:, :extra], tokens.permute(0, 2, 3, 1).flatten(1, 2)), dim=1
                )
        super()._load_from_state_dict(state_dict, prefix, *args)
