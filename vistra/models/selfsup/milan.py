"""MILAN (Hou et al., 2022, `MILAN: Masked Image Pretraining on Language Assisted
Representation <https://arxiv.org/abs/2208.06049>`_), as MMPretrain's and MMSelfSup 1.x's.

A frozen CLIP image encoder (``CLIPGenerator``) gives the targets, one feature per token,
and the attention of its class token to the patches in its last block. That attention
is the probability with which each patch stays visible: ``MILANViT`` draws the kept
patches without replacement by it (``torch.multinomial``), so the encoder sees the
patches CLIP found important. ``MILANPretrainDecoder`` is a prompting decoder: only the
mask tokens pass through its layers, attending to themselves and to the encoder's
visible tokens, which stay unchanged. The loss (``CosineSimilarityLoss`` through
``MIMHead`` / MMSelfSup's ``MILANPretrainHead``) is taken over every token, class token
included. Keys: MAE's (``backbone.*``; ``neck.*`` with ``attn.q``/``attn.kv`` in the
decoder layers) and CLIP's under ``target_generator.tokenizer.*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vistra.data.structures import DataSample
from vistra.models.backbones.vision_transformer import TransformerEncoderLayer
from vistra.models.base import BaseModule
from vistra.models.layers.transformer import MultiheadAttention
from vistra.models.selfsup import clip_vit  # noqa: F401 (registers CLIPGenerator)
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.mae import MAEViT, SelfSupMAEViT, _one_view
from vistra.models.selfsup.mae_decoder import MAEPretrainDecoder
from vistra.registry import MODELS

__all__ = [
    "MILAN",
    "MILANPretrainDecoder",
    "MILANPretrainHead",
    "MILANViT",
    "SelfSupMILANViT",
    "attention_masking",
]


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def attention_masking(
    x: torch.Tensor, mask_ratio: float, importance: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep ``int(L * (1 - mask_ratio))`` of the ``L`` tokens of ``x`` ``(B, L, C)``, drawn
    without replacement with probabilities proportional to ``importance`` ``(B, L)``.

    Returns the kept tokens, ``ids_restore`` (the permutation back to image order of
    ``[kept, dropped]``), ``ids_keep`` and ``ids_dump``.
    """
    length = x.shape[1]
    keep = int(length * (1 - mask_ratio))
    # one multinomial draw of the whole order per sample, as upstream (same RNG use)
    ids_shuffle = torch.multinomial(importance.to(x.device), length, replacement=False)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep, ids_dump = ids_shuffle[:, :keep], ids_shuffle[:, keep:]
    return _gather(x, ids_keep), ids_restore, ids_keep, ids_dump


class _MILANForward:
    """The masked forward both packages' MILANViT share."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, importance: torch.Tensor | None = None
    ) -> Any:
        """``importance`` ``(B, L)`` (CLIP's class-token attention to the patches) ->
        ``(latent, ids_restore, ids_keep, ids_dump)``; ``None``: the plain ViT forward on
        all patches (features for probing)."""
        if importance is None:
            return super(MAEViT, self).forward(x)  # type: ignore[misc]
        batch = x.shape[0]
        x = self.patch_embed(x)[0]  # type: ignore[attr-defined]
        x = x + self.pos_embed[:, 1:]  # type: ignore[attr-defined]
        ratio = self.mask_ratio  # type: ignore[attr-defined]
        x, ids_restore, ids_keep, ids_dump = attention_masking(x, ratio, importance)
        cls_token = (self.cls_token + self.pos_embed[:, :1]).expand(batch, -1, -1)  # type: ignore[attr-defined]
        x = torch.cat((cls_token, x), dim=1)
        for layer in self.layers:  # type: ignore[attr-defined]
            x = layer(x)
        return self.ln1(x), ids_restore, ids_keep, ids_dump  # type: ignore[attr-defined]


@MODELS.register_module()
class MILANViT(_MILANForward, MAEViT):
    """MMPretrain's MILAN encoder: :class:`MAEViT` with CLIP-guided instead of uniform
    masking (same arguments and keys)."""


@MODELS.register_module(name="MILANViT", scope="mmselfsup")
class SelfSupMILANViT(_MILANForward, SelfSupMAEViT):
    """MMSelfSup 1.x's MILAN encoder (``output_cls_token`` instead of ``out_type``)."""


class PromptMultiheadAttention(MultiheadAttention):
    """Attention of the mask tokens (queries) over all tokens (keys and values): the
    visible tokens and the mask tokens in image order, class token first. Parameters
    ``q``, ``kv`` and ``proj`` (no ``qkv``)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dropout_layer: dict | None = None,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__(
            embed_dims,
            num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            dropout_layer=dropout_layer,
            qkv_bias=qkv_bias,
        )
        del self.qkv
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(embed_dims, embed_dims * 2, bias=qkv_bias)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, visible_tokens: torch.Tensor, ids_restore: torch.Tensor
    ) -> torch.Tensor:
        full = torch.cat([visible_tokens[:, 1:], x], dim=1)
        if full.shape[1] != ids_restore.shape[1]:
            raise ValueError(
                f"{visible_tokens.shape[1] - 1} visible and {x.shape[1]} mask tokens do not "
                f"make the {ids_restore.shape[1]} patches of ids_restore"
            )
        full = torch.cat([visible_tokens[:, :1], _gather(full, ids_restore)], dim=1)
        batch, queries, _ = x.shape
        q = self.q(x).reshape(batch, queries, self.num_heads, self.head_dims).transpose(1, 2)
        kv = self.kv(full).reshape(batch, full.shape[1], 2, self.num_heads, self.head_dims)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        out = out.transpose(1, 2).reshape(batch, queries, self.embed_dims)
        return self.out_drop(self.gamma1(self.proj_drop(self.proj(out))))


class PromptTransformerEncoderLayer(TransformerEncoderLayer):
    """A decoder layer whose attention updates the mask tokens only."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        norm_cfg: dict | None = None,
    ) -> None:
        super().__init__(
            embed_dims,
            num_heads,
            feedforward_channels,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
        )
        self.attn = PromptMultiheadAttention(
            embed_dims,
            num_heads,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            dropout_layer=dict(type="DropPath", drop_prob=drop_path_rate),
            qkv_bias=qkv_bias,
        )

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, visible_tokens: torch.Tensor, ids_restore: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), visible_tokens, ids_restore)
        return self.ffn(self.ln2(x), identity=x)


@MODELS.register_module()
class MILANPretrainDecoder(MAEPretrainDecoder):
    """MILAN's prompting decoder (both packages' arguments): MAE's decoder whose layers
    update only the mask tokens; predicts ``predict_feature_dim`` (CLIP's width) values
    for every token, class token first: ``(B, 1 + L, predict_feature_dim)``."""

    def __init__(
        self,
        num_patches: int = 196,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        predict_feature_dim: int = 512,
        mlp_ratio: int = 4,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        super().__init__(
            num_patches=num_patches,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=0,  # replaced by the prompting layers below
            decoder_num_heads=decoder_num_heads,
            mlp_ratio=mlp_ratio,
            norm_cfg=norm_cfg,
            predict_feature_dim=predict_feature_dim,
            init_cfg=init_cfg,
        )
        self.decoder_blocks = nn.ModuleList(
            PromptTransformerEncoderLayer(
                decoder_embed_dim,
                decoder_num_heads,
                int(mlp_ratio * decoder_embed_dim),
                qkv_bias=True,
                norm_cfg=norm_cfg,
            )
            for _ in range(decoder_depth)
        )

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        ids_restore: torch.Tensor,
        ids_keep: torch.Tensor,
        ids_dump: torch.Tensor,
    ) -> torch.Tensor:
        x = self.decoder_embed(x)
        batch = x.shape[0]
        num_hidden = ids_restore.shape[1] + 1 - x.shape[1]
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(batch, num_hidden, -1)], dim=1)
        x = torch.cat([x[:, :1], _gather(tokens, ids_restore)], dim=1) + self.decoder_pos_embed
        # the visible tokens (with their position embedding) stay fixed: they are the
        # prompts the mask tokens attend to
        visible = torch.cat([x[:, :1], _gather(x[:, 1:], ids_keep)], dim=1)
        x = _gather(x[:, 1:], ids_dump)
        for block in self.decoder_blocks:
            x = block(x, visible, ids_restore)
        x = _gather(torch.cat([visible[:, 1:], x], dim=1), ids_restore)
        x = torch.cat([visible[:, :1], x], dim=1)
        return self.decoder_pred(self.decoder_norm(x))


@MODELS.register_module()
class MILANPretrainHead(BaseModule):
    """MMSelfSup 1.x's MILAN head: ``head(pred, target, mask=None)`` applies ``loss``."""

    def __init__(self, loss: dict | nn.Module) -> None:
        super().__init__()
        self.loss_module = (
            loss if isinstance(loss, nn.Module) else MODELS.build(loss, key_path="model.head.loss")
        )

    def loss(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.loss_module(pred, target, mask)

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.loss(pred, target, mask)


@MODELS.register_module()
class MILAN(BaseSelfSupervisor):
    """MILAN: ``backbone`` (``MILANViT``), ``neck`` (``MILANPretrainDecoder``), ``head``
    (``MIMHead`` / ``MILANPretrainHead`` with ``CosineSimilarityLoss``) and
    ``target_generator`` (``CLIPGenerator``). ``mode='loss'`` gives ``{'loss': ...}``;
    ``mode='tensor'`` the backbone's features of the unmasked image."""

    def extract_feat(self, inputs: torch.Tensor | list[torch.Tensor]) -> Any:
        return self.backbone(_one_view(inputs), importance=None)

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        if self.target_generator is None:
            raise ValueError("MILAN needs a target_generator (type='CLIPGenerator')")
        inputs = _one_view(inputs)
        clip_feature, attention = self.target_generator(inputs)
        importance = attention[:, 0, 1:]  # the class token's attention to each patch
        latent, ids_restore, ids_keep, ids_dump = self.backbone(inputs, importance)
        pred = self.neck(latent, ids_restore, ids_keep, ids_dump)
        return {"loss": self.head.loss(pred, clip_feature)}
