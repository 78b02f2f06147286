"""CAE, `Context Autoencoder for Self-Supervised Representation Learning
<https://arxiv.org/abs/2202.03026>`_ (MMPretrain- and MMSelfSup 1.x-compatible).

Model-family file: the encoder ``CAEPretrainViT`` (MMPretrain) / ``CAEViT`` (MMSelfSup),
the cross-attention regressor and decoder ``CAENeck`` (MMSelfSup's variant under scope
``mmselfsup``), ``CAEHead``, ``CAELoss`` and the algorithm ``CAE``. The target generator is
``DALL-E`` (:mod:`dall_e`); the data preprocessors are in :mod:`two_norm_preprocessor`.

One step: the encoder sees only the visible patches (with the fixed sin-cos position
embedding); a ``teacher`` copy of the encoder (momentum ``base_momentum``; 0 copies the
encoder after every step) encodes the masked patches as the latent target; the regressor
predicts the masked patches' latents from ``mask_tokens_num`` mask tokens that
cross-attend to the visible latents; the decoder turns the predictions into DALL-E token
logits. Loss: cross entropy against the DALL-E tokens of the masked patches plus
``lambd`` times the MSE between predicted and teacher latents (``loss``, ``main``,
``align``).

Key layout (upstream's): ``backbone.*`` and ``teacher.*`` (BEiT-style ViT, ``pos_embed``
not trained), ``neck.regressors.{i}.*`` (``norm1_{q,k,v}_cross``, ``cross_attn.{q,k,v}``,
``q_bias``/``v_bias``, ``gamma_{1,2}_cross``, ``norm2_cross``, ``ffn``), ``neck.decoders.*``
(BEiT layers; MMSelfSup's with a ``qkv`` bias), ``neck.norm_regressor``,
``neck.norm_decoder``, ``neck.head``, ``neck.mask_token``, ``target_generator.*``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.beit import BEiTTransformerEncoderLayer, BEiTViT
from vistra.models.backbones.vision_transformer import (
    _has_pretrained,
    mmcls_out_type,
    with_layer_defaults,
)
from vistra.models.base import BaseModule
from vistra.models.layers.drop import DropPath
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import build_2d_sincos_position_embedding
from vistra.models.layers.transformer import FFN
from vistra.models.selfsup.base import BaseSelfSupervisor, stacked_field
from vistra.registry import MODELS

__all__ = [
    "CAE",
    "CAEHead",
    "CAELoss",
    "CAENeck",
    "CAEPretrainViT",
    "CAEViT",
    "CrossMultiheadAttention",
    "SelfSupCAENeck",
]

CAE_VIT_INIT = [
    dict(type="Constant", val=1, layer=["LayerNorm"]),
    dict(type="TruncNormal", std=0.02, layer=["Conv2d"]),
    dict(type="Xavier", distribution="uniform", layer=["Linear"]),
]


def _check_mask(mask: torch.Tensor, num_patches: int, who: str) -> torch.Tensor:
    mask = mask.flatten(1).to(torch.bool)
    if mask.shape[1] != num_patches:
        raise ValueError(
            f"{who}: the mask covers {mask.shape[1]} patches, the encoder is built for "
            f"{num_patches}; make the mask generator's input_size the patch grid"
        )
    counts = mask.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"{who}: every sample must mask the same number of patches, got {counts}")
    return mask


def _cae_init(root: nn.Module, convs: bool) -> None:
    """CAE's initialisation: Xavier-uniform linears, unit layer norms, ``TN(0, 0.02)``
    convolutions (``convs``), zero biases."""
    for module in root.modules():
        if isinstance(module, nn.Linear) or (convs and isinstance(module, nn.Conv2d)):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@MODELS.register_module()
class CAEPretrainViT(BEiTViT):
    """CAE encoder (MMPretrain's ``CAEPretrainViT``): a BEiT-style ViT with a fixed
    sin-cos absolute position embedding.

    ``forward(x, mask)`` (``mask`` ``(B, L)`` or ``(B, h, w)``, 1 = masked) encodes only the
    visible patches and returns ``(B, 1 + visible, C)``; ``forward(x, mask=None)`` is the
    plain :class:`BEiTViT` forward. The input must give the ``img_size`` patch grid.
    """

    def __init__(
        self,
        arch: str | dict = "b",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        bias: bool | str = "qv_bias",
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        out_type: str = "raw",
        frozen_stages: int = -1,
        use_abs_pos_emb: bool = True,
        use_rel_pos_bias: bool = False,
        use_shared_rel_pos_bias: bool = False,
        layer_scale_init_value: float | None = None,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = CAE_VIT_INIT,  # deep-copied by BaseModule
    ) -> None:
        if not use_abs_pos_emb:
            raise ValueError(
                f"{type(self).__name__}: use_abs_pos_emb must be True (CAE adds the position "
                "embedding of the visible and of the masked patches)"
            )
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            bias=bias,
            norm_cfg=dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            with_cls_token=True,
            frozen_stages=frozen_stages,
            use_abs_pos_emb=use_abs_pos_emb,
            use_rel_pos_bias=use_rel_pos_bias,
            use_shared_rel_pos_bias=use_shared_rel_pos_bias,
            interpolate_mode=interpolate_mode,
            layer_scale_init_value=layer_scale_init_value or 0.0,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg,
        )
        self.pos_embed.requires_grad = False
        self.num_patches = self.patch_resolution[0] * self.patch_resolution[1]

    def init_weights(self) -> None:
        """Upstream's initialisers, then the sin-cos ``pos_embed`` and ``cls_token ~ TN(0,
        0.02)`` (skipped when a checkpoint is loaded)."""
        if self.is_init:
            return
        super().init_weights()
        if _has_pretrained(self.init_cfg):
            return
        pos = build_2d_sincos_position_embedding(
            int(self.num_patches**0.5), self.pos_embed.shape[-1], cls_token=True
        )
        self.pos_embed.data.copy_(pos.float())
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if mask is None:
            return super().forward(x)
        mask = _check_mask(mask, self.num_patches, type(self).__name__)
        x, _ = self.patch_embed(x)
        batch, _, dims = x.shape
        visible = x[~mask].reshape(batch, -1, dims)
        visible = torch.cat((self.cls_token.expand(batch, -1, -1), visible), dim=1)
        pos = self.pos_embed.expand(batch, self.num_patches + 1, dims)
        pos_visible = pos[:, 1:][~mask].reshape(batch, -1, dims)
        visible = visible + torch.cat((pos[:, :1], pos_visible), dim=1)
        visible = self.drop_after_pos(visible)
        for i, layer in enumerate(self.layers):
            visible = layer(visible, rel_pos_bias=None)
            if i == len(self.layers) - 1 and self.final_norm:
                visible = self.ln1(visible)
        return visible


@MODELS.register_module()
class CAEViT(CAEPretrainViT):
    """MMSelfSup 1.x's CAE encoder: :class:`CAEPretrainViT` with the arguments of its
    mmcls 1.0 ViT (``qkv_bias``: False is the query/value biases of the released models,
    ``init_values`` the layer scale, ``output_cls_token``). Same keys. Its layers apply
    stochastic depth once per branch (no extra drop path inside the FFN)."""

    def __init__(
        self,
        arch: str | dict = "b",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        output_cls_token: bool = True,
        interpolate_mode: str = "bicubic",
        init_values: float | None = None,
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            bias=True if qkv_bias else "qv_bias",
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type=mmcls_out_type(False, output_cls_token, "cls_token"),
            interpolate_mode=interpolate_mode,
            layer_scale_init_value=init_values,
            patch_cfg=patch_cfg,
            layer_cfgs=with_layer_defaults(dict(ffn_cfg=dict(dropout_layer=None)), layer_cfgs),
            init_cfg=init_cfg,
        )
        self.output_cls_token = output_cls_token

    def init_weights(self) -> None:
        """MMSelfSup's: sin-cos ``pos_embed``, then Xavier-uniform linears, unit layer
        norms, ``TN(0, 0.02)`` convolutions, zero biases."""
        if self.is_init:
            return
        super().init_weights()
        if _has_pretrained(self.init_cfg):
            return
        _cae_init(self, convs=True)


class CrossMultiheadAttention(BaseModule):
    """Attention of queries ``x`` over separate keys ``k`` and values ``v`` (projected by
    ``q``/``k``/``v`` linears without bias; ``qkv_bias`` adds learned query and value
    biases, the key has none)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (embed_dims // num_heads) ** -0.5
        self.q = nn.Linear(embed_dims, embed_dims, bias=False)
        self.k = nn.Linear(embed_dims, embed_dims, bias=False)
        self.v = nn.Linear(embed_dims, embed_dims, bias=False)
        if qkv_bias:
            self.q_bias: nn.Parameter | None = nn.Parameter(torch.zeros(embed_dims))
            self.v_bias: nn.Parameter | None = nn.Parameter(torch.zeros(embed_dims))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        q = F.linear(x, self.q.weight, self.q_bias)
        k = F.linear(k, self.k.weight)
        v = F.linear(v, self.v.weight, self.v_bias)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, t.shape[1], self.num_heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(q),
            heads(k),
            heads(v),
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out = out.transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_drop(self.proj(out))


class CAETransformerRegressorLayer(BaseModule):
    """Regressor layer: the mask queries (plus their positions) cross-attend to all
    tokens (``[visible, masked]``, keys with positions), then an FFN; each branch scaled
    by ``gamma_*_cross`` (fixed ones without layer scale)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        num_fcs: int = 2,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 0.0,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        self.norm1_q_cross = build_norm_layer(norm_cfg, embed_dims)[1]
        self.norm1_k_cross = build_norm_layer(norm_cfg, embed_dims)[1]
        self.norm1_v_cross = build_norm_layer(norm_cfg, embed_dims)[1]
        self.norm2_cross = build_norm_layer(norm_cfg, embed_dims)[1]
        self.cross_attn = CrossMultiheadAttention(
            embed_dims, num_heads, qkv_bias, qk_scale, attn_drop_rate, drop_rate
        )
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            dropout_layer=None,
            act_cfg=dict(type="GELU") if act_cfg is None else act_cfg,
            add_identity=False,
        )
        self.drop_path = DropPath(drop_path_rate)
        scale = layer_scale_init_value or 0.0
        trainable = scale > 0
        start = scale if trainable else 1.0
        self.gamma_1_cross = nn.Parameter(start * torch.ones(embed_dims), requires_grad=trainable)
        self.gamma_2_cross = nn.Parameter(start * torch.ones(embed_dims), requires_grad=trainable)

    def forward(
        self, x_q: torch.Tensor, x_kv: torch.Tensor, pos_q: torch.Tensor, pos_k: torch.Tensor
    ) -> torch.Tensor:
        attn = self.cross_attn(
            self.norm1_q_cross(x_q + pos_q),
            k=self.norm1_k_cross(x_kv + pos_k),
            v=self.norm1_v_cross(x_kv),
        )
        x = self.norm2_cross(x_q + self.drop_path(self.gamma_1_cross * attn))
        return x + self.drop_path(self.gamma_2_cross * self.ffn(x))


@MODELS.register_module()
class CAENeck(BaseModule):
    """CAE regressor and decoder (MMPretrain's ``CAENeck``).

    ``forward(visible, pos_masked, pos_visible)`` -> ``(logits, latent_pred)``: the
    decoder's ``num_classes`` logits for each of the ``mask_tokens_num`` masked patches and
    the regressor's latent predictions ``(B, mask_tokens_num, C)``.
    """

    _selfsup_decoder = False  # MMSelfSup's decoder layers (see SelfSupCAENeck)

    def __init__(
        self,
        num_classes: int = 8192,
        embed_dims: int = 768,
        regressor_depth: int = 6,
        decoder_depth: int = 8,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        layer_scale_init_value: float | None = None,
        mask_tokens_num: int = 75,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        self.num_features = self.embed_dim = embed_dims
        self.mask_token_num = mask_tokens_num
        scale = layer_scale_init_value or 0.0
        hidden = mlp_ratio * embed_dims
        rates = torch.linspace(0, drop_path_rate, regressor_depth).tolist()
        self.regressors = nn.ModuleList(
            CAETransformerRegressorLayer(
                embed_dims=embed_dims,
                num_heads=num_heads,
                feedforward_channels=hidden,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=rate,
                norm_cfg=norm_cfg,
                layer_scale_init_value=scale,
            )
            for rate in rates
        )
        rates = torch.linspace(0, drop_path_rate, decoder_depth).tolist()
        # MMPretrain's decoder layers keep BEiT's query/value biases; MMSelfSup's follow
        # qkv_bias and apply no extra drop path inside their FFN
        bias = (True if qkv_bias else "qv_bias") if self._selfsup_decoder else "qv_bias"
        ffn_cfg = dict(dropout_layer=None) if self._selfsup_decoder else None
        self.decoders = nn.ModuleList(
            BEiTTransformerEncoderLayer(
                embed_dims=embed_dims,
                num_heads=num_heads,
                feedforward_channels=hidden,
                layer_scale_init_value=scale,
                window_size=None,
                use_rel_pos_bias=False,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=rate,
                bias=bias,
                norm_cfg=norm_cfg,
                ffn_cfg=ffn_cfg,
            )
            for rate in rates
        )
        self.norm_regressor = build_norm_layer(norm_cfg, embed_dims)[1]
        self.norm_decoder = build_norm_layer(norm_cfg, embed_dims)[1]
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dims))

    def init_weights(self) -> None:
        """Xavier-uniform linears with zero biases, unit layer norms, then ``mask_token``
        and the output ``head`` ~ ``TN(0, 0.02)``."""
        if self.is_init:
            return
        super().init_weights()
        _cae_init(self, convs=False)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=0.02)

    def forward(
        self,
        x_unmasked: torch.Tensor,
        pos_embed_masked: torch.Tensor,
        pos_embed_unmasked: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if pos_embed_masked.shape[1] != self.mask_token_num:
            raise ValueError(
                f"CAENeck: mask_tokens_num is {self.mask_token_num} but the mask hides "
                f"{pos_embed_masked.shape[1]} patches per image; give the neck the mask "
                "generator's num_masking_patches"
            )
        masked = self.mask_token.expand(x_unmasked.shape[0], self.mask_token_num, -1)
        pos_all = torch.cat([pos_embed_unmasked, pos_embed_masked], dim=1)
        for regressor in self.regressors:
            masked = regressor(
                masked, torch.cat([x_unmasked, masked], dim=1), pos_embed_masked, pos_all
            )
        latent_pred = self.norm_regressor(masked)
        x = latent_pred + pos_embed_masked
        for decoder in self.decoders:
            x = decoder(x, rel_pos_bias=None)
        return self.head(self.norm_decoder(x)), latent_pred


@MODELS.register_module(name="CAENeck", scope="mmselfsup")
class SelfSupCAENeck(CAENeck):
    """MMSelfSup 1.x's ``CAENeck``: ``init_values`` for the layer scale, an unused
    ``patch_size``, and decoder layers with a ``qkv`` bias when ``qkv_bias`` (else query and
    value biases) and no extra drop path inside their FFN."""

    _selfsup_decoder = True

    def __init__(
        self,
        patch_size: int = 16,
        num_classes: int = 8192,
        embed_dims: int = 768,
        regressor_depth: int = 6,
        decoder_depth: int = 8,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        init_values: float | None = None,
        mask_tokens_num: int = 75,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        self.patch_size = patch_size
        super().__init__(
            num_classes=num_classes,
            embed_dims=embed_dims,
            regressor_depth=regressor_depth,
            decoder_depth=decoder_depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=norm_cfg,
            layer_scale_init_value=init_values,
            mask_tokens_num=mask_tokens_num,
            init_cfg=init_cfg,
        )


@MODELS.register_module()
class CAELoss(nn.Module):
    """``(cross entropy of the decoder's logits, lambd * MSE of the latent prediction
    against the teacher's latents)``."""

    def __init__(self, lambd: float) -> None:
        super().__init__()
        self.lambd = lambd
        self.loss_cross_entropy = nn.CrossEntropyLoss()
        self.loss_mse = nn.MSELoss()

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        latent_pred: torch.Tensor,
        latent_target: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss_main = self.loss_cross_entropy(logits, target)
        loss_align = self.loss_mse(latent_pred, latent_target.detach()) * self.lambd
        return loss_main, loss_align


@MODELS.register_module()
class CAEHead(BaseModule):
    """The DALL-E tokens of the masked patches as targets, and ``loss`` (``CAELoss``)
    between them and the neck's outputs: ``(loss_main, loss_align)``. ``forward`` is the
    same (MMSelfSup's heads compute their loss in ``forward``)."""

    def __init__(self, loss: dict, init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.loss_module = MODELS.build(loss, key_path="model.head.loss")

    def loss(
        self,
        logits: torch.Tensor,
        logits_target: torch.Tensor,
        latent_pred: torch.Tensor,
        latent_target: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            target = torch.argmax(logits_target, dim=1).flatten(1)
        if target.shape != mask.shape:
            raise ValueError(
                f"CAE: DALL-E gives {tuple(target.shape[1:])} tokens per image and the mask "
                f"covers {tuple(mask.shape[1:])} patches; the target view must be half the "
                "image size (DALL-E downsamples 8x, the encoder 16x)"
            )
        return self.loss_module(logits, target[mask].detach(), latent_pred, latent_target)

    forward = loss


@MODELS.register_module()
class CAE(BaseSelfSupervisor):
    """CAE: ``backbone`` (CAE ViT), ``neck`` (``CAENeck``), ``head`` (``CAEHead``),
    ``target_generator`` (``DALL-E``) and a ``teacher`` built from the backbone's config,
    updated as ``teacher = base_momentum * teacher + (1 - base_momentum) * backbone`` after
    it has made each step's latent targets.

    ``inputs`` are ``[image, DALL-E view]``; each sample carries its ``mask``.
    """

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        target_generator: dict | None = None,
        base_momentum: float = 0.0,
        data_preprocessor: dict | nn.Module | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if not isinstance(backbone, dict):
            raise TypeError("CAE: backbone must be a config dict (the teacher is built from it)")
        super().__init__(
            backbone=copy.deepcopy(backbone),
            neck=neck,
            head=head,
            target_generator=target_generator,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        self.momentum = base_momentum
        self.teacher = MODELS.build(copy.deepcopy(backbone), key_path="model.backbone")
        for param in self.teacher.parameters():
            param.requires_grad = False

    def init_weights(self) -> None:
        """Initialise, then start the teacher as a copy of the backbone."""
        super().init_weights()
        with torch.no_grad():
            for student, teacher in zip(self.backbone.parameters(), self.teacher.parameters()):
                teacher.copy_(student)
                teacher.requires_grad = False

    @torch.no_grad()
    def momentum_update(self) -> None:
        for student, teacher in zip(self.backbone.parameters(), self.teacher.parameters()):
            teacher.data = teacher.data * self.momentum + student.data * (1.0 - self.momentum)

    def extract_feat(self, inputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        image = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return self.backbone(image, mask=None)

    def loss(
        self, inputs: list[torch.Tensor], data_samples: Sequence[DataSample] | None
    ) -> dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "CAE takes two views per image, [image, DALL-E view] "
                "(RandomResizedCropAndInterpolationWithTwoPic with second_size)"
            )
        image = inputs[0]
        batch = image.shape[0]
        mask = stacked_field(data_samples, "mask").to(image.device).flatten(1).to(torch.bool)
        unmasked = self.backbone(image, mask)
        with torch.no_grad():
            latent_target = self.teacher(image, ~mask)[:, 1:, :]
            self.momentum_update()
        pos = self.backbone.pos_embed.expand(batch, -1, -1)[:, 1:]
        dims = pos.shape[-1]
        pos_masked = pos[mask].reshape(batch, -1, dims)
        pos_unmasked = pos[~mask].reshape(batch, -1, dims)
        logits, latent_pred = self.neck(unmasked[:, 1:], pos_masked, pos_unmasked)
        logits = logits.reshape(-1, logits.shape[-1])
        logits_target = self.target_generator(inputs[1])
        loss_main, loss_align = self.head.loss(
            logits, logits_target, latent_pred, latent_target, mask
        )
        return {"loss": loss_main + loss_align, "main": loss_main, "align": loss_align}
