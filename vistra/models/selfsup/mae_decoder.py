"""``MAEPretrainDecoder``: MAE's light decoder from visible tokens back to every patch.

The encoder's visible tokens are projected to the decoder width, a shared learned
``mask_token`` fills the places of the hidden patches, ``ids_restore`` puts all tokens back
in image order, a fixed 2-D sin-cos position embedding is added, and a few transformer
layers, a norm and a linear layer predict each patch's ``p * p * C`` pixel values.
Parameter names are MMPretrain's: ``mask_token``, ``decoder_pos_embed``, ``decoder_embed``,
``decoder_blocks.{i}.*``, the norm ``ln1`` and ``decoder_pred``.
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.backbones.vision_transformer import TransformerEncoderLayer
from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import build_2d_sincos_position_embedding
from vistra.registry import MODELS


@MODELS.register_module()
class MAEPretrainDecoder(BaseModule):
    """MAE decoder with MMPretrain's arguments.

    ``num_patches`` is the encoder's patch count (a square grid), ``embed_dim`` the
    encoder width, ``decoder_*`` the decoder's width, depth and heads, ``mlp_ratio`` the
    FFN expansion. The output has ``predict_feature_dim`` values per patch, by default
    ``patch_size**2 * in_chans`` (pixels).
    """

    def __init__(
        self,
        num_patches: int = 196,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4,
        norm_cfg: dict | None = None,
        predict_feature_dim: int | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(
                f"MAEPretrainDecoder(num_patches={num_patches}) must be a square grid "
                "(img_size // patch_size) ** 2"
            )
        self.num_patches = num_patches
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        # fixed, not learned (filled in init_weights); one extra row for the class token
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False
        )
        self.decoder_blocks = nn.ModuleList(
            TransformerEncoderLayer(
                decoder_embed_dim,
                decoder_num_heads,
                int(mlp_ratio * decoder_embed_dim),
                qkv_bias=True,
                norm_cfg=norm_cfg,
            )
            for _ in range(decoder_depth)
        )
        self.decoder_norm_name, norm = build_norm_layer(norm_cfg, decoder_embed_dim, postfix=1)
        self.add_module(self.decoder_norm_name, norm)
        if predict_feature_dim is None:
            predict_feature_dim = patch_size**2 * in_chans
        self.decoder_pred = nn.Linear(decoder_embed_dim, predict_feature_dim, bias=True)

    @property
    def decoder_norm(self) -> nn.Module:
        return getattr(self, self.decoder_norm_name)

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        pos = build_2d_sincos_position_embedding(
            int(round(self.num_patches**0.5)), self.decoder_pos_embed.shape[-1], cls_token=True
        )
        self.decoder_pos_embed.data.copy_(pos)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, 1 + visible, C_enc)`` (class token first), ``ids_restore`` ``(B, L)``
        -> predictions ``(B, L, predict_feature_dim)`` in image order."""
        x = self.decoder_embed(x)
        batch, dims = x.shape[0], x.shape[2]
        num_hidden = ids_restore.shape[1] + 1 - x.shape[1]
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(batch, num_hidden, -1)], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dims))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:]  # drop the class token
