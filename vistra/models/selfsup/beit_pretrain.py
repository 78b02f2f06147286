"""BEiT pre-training, v1 and v2: `BEiT: BERT Pre-Training of Image Transformers
<https://arxiv.org/abs/2106.08254>`_ and `BEiT v2: Masked Image Modeling with
Vector-Quantized Visual Tokenizers <https://arxiv.org/abs/2208.06366>`_.

Model-family file: the encoder ``BEiTPretrainViT`` (MMPretrain) and MMSelfSup 1.x's
``BEiTViT`` (scope ``mmselfsup``; the plain ``BEiTViT`` is MMPretrain's classification
backbone), the v1 head ``BEiTV1Head``, MMSelfSup's ``BEiTLoss`` and the algorithm ``BEiT``.
The v2 neck and head live in :mod:`beit_v2`, the tokenizers in :mod:`dall_e` (v1) and
:mod:`vqkd` (v2).

One step: the pipeline gives two views of one crop (224 px for the encoder, the tokenizer's
size for the target) and a block-wise mask over the patch grid
(``BEiTMaskGenerator``). The encoder replaces the masked patch embeddings by a learned
``mask_token`` and runs on all tokens; the tokenizer turns the second view into one visual
token per patch (under ``no_grad``); a linear head classifies the masked patches into the
tokenizer's vocabulary with a cross-entropy loss (v2 adds a second loss on the output of
two extra layers fed with early patch features, see :mod:`beit_v2`).

Key layout: upstream's, identical in both packages: ``backbone.*`` (BEiT ViT with
``mask_token`` and one shared relative position bias ``rel_pos_bias.*``), ``neck.*`` (v2),
``head.cls_head.*`` and ``target_generator.*``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.beit import BEiTViT
from vistra.models.backbones.vision_transformer import _has_pretrained, mmcls_out_type
from vistra.models.base import BaseModule
from vistra.models.layers.transformer import resize_pos_embed
from vistra.models.selfsup.base import BaseSelfSupervisor, stacked_field
from vistra.registry import MODELS

__all__ = ["BEiT", "BEiTLoss", "BEiTPretrainViT", "BEiTV1Head", "MMClsBEiT", "SelfSupBEiTViT"]


@MODELS.register_module()
class BEiTPretrainViT(BEiTViT):
    """BEiT ViT for masked image modelling (MMPretrain's ``BEiTPretrainViT``).

    ``forward(x, mask)`` with a ``(B, h, w)`` 0/1 mask puts ``mask_token`` in place of the
    masked patch embeddings and returns the ``out_indices`` token sequences ``(B, 1 + L,
    C)`` (class token first; the final norm after the last layer when ``final_norm``);
    ``forward(x, mask=None)`` is the plain :class:`BEiTViT` forward shaped by ``out_type``.
    The shared relative position bias of the last masked forward is kept as
    ``shared_rel_pos_bias`` (BEiT v2's neck reuses it).
    """

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        out_type: str = "raw",
        frozen_stages: int = -1,
        use_abs_pos_emb: bool = False,
        use_rel_pos_bias: bool = False,
        use_shared_rel_pos_bias: bool = True,
        layer_scale_init_value: float = 0.1,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            with_cls_token=True,
            frozen_stages=frozen_stages,
            use_abs_pos_emb=use_abs_pos_emb,
            use_rel_pos_bias=use_rel_pos_bias,
            use_shared_rel_pos_bias=use_shared_rel_pos_bias,
            layer_scale_init_value=layer_scale_init_value,
            interpolate_mode=interpolate_mode,
            patch_cfg=dict(padding=0) if patch_cfg is None else patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg,
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.shared_rel_pos_bias: torch.Tensor | None = None

    def init_weights(self) -> None:
        """Upstream's initialisation, then ``cls_token``/``mask_token ~ TN(0, 0.02)`` and
        each layer's output projections scaled by ``1/sqrt(2 * depth)`` (skipped when a
        checkpoint is loaded)."""
        if self.is_init:
            return
        super().init_weights()
        if _has_pretrained(self.init_cfg):
            return
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        with torch.no_grad():
            for depth, layer in enumerate(self.layers, start=1):
                layer.attn.proj.weight.div_(math.sqrt(2.0 * depth))
                layer.ffn.layers[1].weight.div_(math.sqrt(2.0 * depth))

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        if mask is None:
            return super().forward(x)
        x, grid = self.patch_embed(x)
        batch, length, _ = x.shape
        if mask.flatten(1).shape[1] != length:
            raise ValueError(
                f"{type(self).__name__}: the mask covers {mask.flatten(1).shape[1]} patches, "
                f"the image has {length} ({grid[0]}x{grid[1]}); make the mask generator's "
                "input_size the patch grid of the input"
            )
        mask_token = self.mask_token.expand(batch, length, -1)
        w = mask.flatten(1).unsqueeze(-1).type_as(mask_token)
        x = x * (1.0 - w) + mask_token * w
        x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        if self.pos_embed is not None:
            x = x + resize_pos_embed(
                self.pos_embed,
                self.patch_resolution,
                grid,
                mode=self.interpolate_mode,
                num_extra_tokens=self.num_extra_tokens,
            )
        x = self.drop_after_pos(x)
        shared = self.rel_pos_bias() if self.rel_pos_bias is not None else None
        self.shared_rel_pos_bias = shared
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x, rel_pos_bias=shared)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


@MODELS.register_module(name="BEiTViT", scope="mmselfsup")
class SelfSupBEiTViT(BEiTPretrainViT):
    """MMSelfSup 1.x's ``BEiTViT``: :class:`BEiTPretrainViT` with the arguments of the
    mmcls 1.0 ``BEiT`` it derives from (``avg_token``/``output_cls_token`` instead of
    ``out_type``, which only shape the unmasked forward). Same parameters and keys."""

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        avg_token: bool = False,
        frozen_stages: int = -1,
        output_cls_token: bool = True,
        use_abs_pos_emb: bool = False,
        use_rel_pos_bias: bool = False,
        use_shared_rel_pos_bias: bool = True,
        layer_scale_init_value: float = 0.1,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type=mmcls_out_type(avg_token, output_cls_token, "cls_token"),
            frozen_stages=frozen_stages,
            use_abs_pos_emb=use_abs_pos_emb,
            use_rel_pos_bias=use_rel_pos_bias,
            use_shared_rel_pos_bias=use_shared_rel_pos_bias,
            layer_scale_init_value=layer_scale_init_value,
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg,
        )
        self.avg_token, self.output_cls_token = avg_token, output_cls_token


@MODELS.register_module(name="BEiT", scope="mmcls")
class MMClsBEiT(BEiTViT):
    """mmcls 1.0rc's ``BEiT`` classification backbone (the ``BEiT`` that MMSelfSup's
    fine-tuning configs name under ``mmcls::`` bases): :class:`BEiTViT` with
    ``avg_token``/``output_cls_token`` for ``out_type`` and mmcls's defaults. Same keys.

    Registered for scope ``mmcls`` only: in MMPretrain (and for every other scope) ``BEiT``
    is the pre-training algorithm; a lookup in ``mmcls`` takes this first.
    """

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        final_norm: bool = False,
        with_cls_token: bool = True,
        avg_token: bool = True,
        frozen_stages: int = -1,
        output_cls_token: bool = False,
        use_abs_pos_emb: bool = False,
        use_rel_pos_bias: bool = True,
        use_shared_rel_pos_bias: bool = False,
        layer_scale_init_value: float = 0.1,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg,
            final_norm=final_norm,
            out_type=mmcls_out_type(avg_token, output_cls_token, "cls_token"),
            with_cls_token=with_cls_token,
            frozen_stages=frozen_stages,
            use_abs_pos_emb=use_abs_pos_emb,
            use_rel_pos_bias=use_rel_pos_bias,
            use_shared_rel_pos_bias=use_shared_rel_pos_bias,
            interpolate_mode=interpolate_mode,
            layer_scale_init_value=layer_scale_init_value,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg,
        )
        self.avg_token, self.output_cls_token = avg_token, output_cls_token


@MODELS.register_module()
class BEiTLoss(nn.Module):
    """MMSelfSup's BEiT loss: the cross entropy of ``logits`` (or of each of a tuple of
    logits, BEiT v2's two predictions, giving a tuple of losses) against ``target``."""

    def __init__(self) -> None:
        super().__init__()
        self.loss_cross_entropy = nn.CrossEntropyLoss()

    def forward(
        self, logits: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if isinstance(logits, torch.Tensor):
            return self.loss_cross_entropy(logits, target)
        return tuple(self.loss_cross_entropy(one, target) for one in logits)


def masked_targets(target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, L)`` bool mask and the targets of the masked patches: ``target`` is either
    tokenizer logits ``(B, V, h, w)`` (their argmax) or token ids ``(B, L)``."""
    mask = mask.flatten(1).to(torch.bool)
    if target.dim() == 4:
        target = torch.argmax(target, dim=1).flatten(1)
    if target.shape != mask.shape:
        raise ValueError(
            f"BEiT: the tokenizer gives {tuple(target.shape[1:])} tokens per image and the "
            f"mask covers {tuple(mask.shape[1:])} patches; the target view must give the "
            "tokenizer the patch grid of the mask"
        )
    return mask, target[mask]


TRUNC_NORMAL_LINEAR = dict(type="TruncNormal", layer="Linear", std=0.02, bias=0)


@MODELS.register_module()
class BEiTV1Head(BaseModule):
    """BEiT v1 head: a linear classifier ``cls_head`` of the masked patch tokens (class
    token dropped) into ``num_embed`` visual tokens; :meth:`loss` is ``loss`` (MMPretrain's
    ``CrossEntropyLoss``, MMSelfSup's ``BEiTLoss``) against the tokenizer's argmax.
    ``forward`` is the same (MMSelfSup's heads compute their loss in ``forward``)."""

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

    def loss(self, feats: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``feats`` ``(B, 1 + L, C)``, ``target`` the tokenizer's logits, ``mask``
        ``(B, h, w)``."""
        mask, target = masked_targets(target, mask)
        logits = self.cls_head(feats[:, 1:][mask])
        return self.loss_module(logits, target)

    forward = loss


@MODELS.register_module()
class BEiT(BaseSelfSupervisor):
    """BEiT v1 (no neck, ``BEiTV1Head``, the ``DALL-E`` tokenizer) and v2 (``BEiTV2Neck``,
    ``BEiTV2Head``, the ``VQKD`` tokenizer), both packages' configs.

    ``inputs`` are the two views ``[image, tokenizer view]``; each data sample carries its
    ``mask``. ``mode='loss'`` gives ``{'loss': ...}`` (v1) or ``{'loss_1', 'loss_2'}``
    (v2: final-layer and early-feature predictions); ``mode='tensor'`` the backbone's
    features of the unmasked first view.
    """

    def extract_feat(self, inputs: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        image = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return self.backbone(image, mask=None)

    def loss(
        self, inputs: list[torch.Tensor], data_samples: Sequence[DataSample] | None
    ) -> dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "BEiT takes two views per image, [image, tokenizer view] "
                "(RandomResizedCropAndInterpolationWithTwoPic with second_size), got "
                f"{type(inputs).__name__} of {len(inputs) if isinstance(inputs, (list, tuple)) else 1}"
            )
        mask = stacked_field(data_samples, "mask").to(inputs[0].device)
        latent = self.backbone(inputs[0], mask)
        with torch.no_grad():
            target = self.target_generator(inputs[1]).detach()
        if self.with_neck:  # v2
            feats, feats_cls_pt = self.neck(latent, rel_pos_bias=self.backbone.shared_rel_pos_bias)
            loss_1, loss_2 = self.head.loss(feats, feats_cls_pt, target, mask)
            return {"loss_1": loss_1, "loss_2": loss_2}
        return {"loss": self.head.loss(latent[0], target, mask)}
