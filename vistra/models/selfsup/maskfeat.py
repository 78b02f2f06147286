"""MaskFeat (Wei et al., 2021, `Masked Feature Prediction for Self-Supervised Visual
Pre-Training <https://arxiv.org/abs/2112.09133>`_), as MMPretrain's and MMSelfSup 1.x's
``MaskFeat``.

Model-family file: the encoder ``MaskFeatViT`` (and MMSelfSup's variant, scope
``mmselfsup``), MMSelfSup's ``MaskFeatPretrainHead`` and the algorithm ``MaskFeat``. One
step: the ViT replaces the embeddings of the masked patches (the pipeline's
``BEiTMaskGenerator`` block mask on the 14x14 patch grid) by a learned ``mask_token`` and
encodes all tokens; a linear neck (``LinearNeck``) maps each token to the patch's HOG
descriptor size; the loss (``PixelReconstructionLoss`` L2, through ``MIMHead`` or
``MaskFeatPretrainHead``) compares it with the ``HOGGenerator`` target on the masked
patches only, the class token left out.

Keys (both packages): the ViT's (``backbone.patch_embed``, ``cls_token``, ``pos_embed``,
``layers.*``, ``ln1``) plus ``backbone.mask_token``; ``neck.fc``; the HOG generator's
fixed buffers under ``target_generator.*``. Not provided: MMSelfSup's visualisation
helpers (``MaskFeat.reconstruct``, ``HOGGenerator.generate_hog_image``, which draws with
OpenCV); training and feature extraction do not use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.vision_transformer import VisionTransformer, _has_pretrained
from vistra.models.base import BaseModule
from vistra.models.layers.transformer import resize_pos_embed
from vistra.models.selfsup import (
    eva,  # noqa: F401 (registers MIMHead)
    hog,  # noqa: F401 (registers HOGGenerator)
)
from vistra.models.selfsup.base import BaseSelfSupervisor, stacked_field
from vistra.models.selfsup.simmim import _one_view
from vistra.registry import MODELS

__all__ = [
    "MaskFeat",
    "MaskFeatPretrainHead",
    "MaskFeatViT",
    "SelfSupMaskFeat",
    "SelfSupMaskFeatViT",
]


def _maskfeat_init(module: nn.Module) -> None:
    """Upstream's: truncated-normal linear and conv weights, zero linear biases, unit
    layer norms."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class _MaskedViTMixin:
    """The masked forward both packages' ``MaskFeatViT`` share."""

    def _masked_forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        x, grid = self.patch_embed(x)
        length = x.shape[1]
        mask = mask.flatten(1)
        if mask.shape[1] != length:
            raise ValueError(
                f"MaskFeatViT: the mask has {mask.shape[1]} entries per image, the patch grid "
                f"{tuple(grid)} has {length}"
            )
        weight = mask.unsqueeze(-1).type_as(x)
        x = x * (1 - weight) + self.mask_token.expand(batch, length, -1) * weight
        x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed, self.patch_resolution, grid, self.interpolate_mode, 1
        )
        x = self.drop_after_pos(x)
        for layer in self.layers:
            x = layer(x)
        if self.final_norm:
            x = self.ln1(x)
        return x

    def init_weights(self) -> None:
        """Upstream's: truncated-normal tokens, position embedding, linear and conv
        weights; skipped when the backbone loads a checkpoint."""
        if self.is_init:
            return
        super().init_weights()
        if _has_pretrained(self.init_cfg):
            return
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_maskfeat_init)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if mask is None:
            return super().forward(x)
        return self._masked_forward(x, mask)


@MODELS.register_module()
class MaskFeatViT(_MaskedViTMixin, VisionTransformer):
    """ViT encoder of MaskFeat (MMPretrain's): ``forward(x, mask)`` with ``mask``
    ``(B, L)`` or ``(B, h, w)`` (1/True = hidden) returns all tokens ``(B, 1 + L, C)``,
    class token first, after the final norm; ``mask=None`` is the plain
    :class:`VisionTransformer` forward shaped by ``out_type``."""

    def __init__(
        self,
        arch: str | dict = "b",
        img_size: int = 224,
        patch_size: int = 16,
        out_indices: Sequence[int] | int = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = dict(type="LN", eps=1e-6),  # noqa: B006 (never mutated)
        final_norm: bool = True,
        out_type: str = "raw",
        interpolate_mode: str = "bicubic",
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
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            with_cls_token=True,
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg,
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.num_patches = self.patch_resolution[0] * self.patch_resolution[1]


@MODELS.register_module(name="MaskFeatViT", scope="mmselfsup")
class SelfSupMaskFeatViT(_MaskedViTMixin, VisionTransformer):
    """MMSelfSup 1.x's ``MaskFeatViT``: the same encoder, keys and masked forward, with
    the mmcls 1.0 argument ``output_cls_token`` instead of ``out_type`` (it only shapes
    the plain forward, ``mask=None``)."""

    def __init__(
        self,
        arch: str | dict = "b",
        img_size: int = 224,
        patch_size: int = 16,
        out_indices: Sequence[int] | int = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = dict(type="LN", eps=1e-6),  # noqa: B006 (never mutated)
        final_norm: bool = True,
        output_cls_token: bool = True,
        interpolate_mode: str = "bicubic",
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
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            with_cls_token=True,
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            output_cls_token=output_cls_token,
            init_cfg=init_cfg,
        )
        self.output_cls_token = output_cls_token
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.num_patches = self.patch_resolution[0] * self.patch_resolution[1]


@MODELS.register_module()
class MaskFeatPretrainHead(BaseModule):
    """MMSelfSup 1.x's MaskFeat head: drops the class token's prediction and applies
    ``loss`` on the masked patches (``head(pred, target, mask)``, ``pred`` ``(B, 1 + L, D)``,
    ``mask`` ``(B, h, w)``)."""

    def __init__(self, loss: dict | nn.Module) -> None:
        super().__init__()
        self.loss_module = (
            loss if isinstance(loss, nn.Module) else MODELS.build(loss, key_path="model.head.loss")
        )

    def loss(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.loss_module(pred[:, 1:], target, mask.flatten(1).bool())

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.loss(pred, target, mask)


@MODELS.register_module()
class MaskFeat(BaseSelfSupervisor):
    """MaskFeat: ``backbone`` (:class:`MaskFeatViT`), ``neck`` (``LinearNeck``), ``head``
    (``MIMHead``) and ``target_generator`` (``HOGGenerator``). The data samples carry the
    ``(14, 14)`` mask. ``mode='loss'`` gives ``{'loss': ...}``; nothing random is drawn
    in the model."""

    def extract_feat(self, inputs: torch.Tensor | list[torch.Tensor]) -> Any:
        return self.backbone(_one_view(inputs), mask=None)

    def _predict(
        self, img: torch.Tensor, data_samples: Sequence[DataSample] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token predictions ``(B, 1 + L, D)`` and the ``(B, L)`` boolean mask."""
        if self.target_generator is None:
            raise ValueError("MaskFeat needs a target_generator (type='HOGGenerator')")
        mask = stacked_field(data_samples or [], "mask").to(img.device).flatten(1).bool()
        latent = self.backbone(img, mask)
        batch, length, dims = latent.shape
        pred = self.neck((latent.reshape(batch * length, dims),))
        return pred[0].view(batch, length, -1), mask

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        img = _one_view(inputs)
        pred, mask = self._predict(img, data_samples)
        target = self.target_generator(img)
        return {"loss": self.head.loss(pred[:, 1:], target, mask)}


@MODELS.register_module(name="MaskFeat", scope="mmselfsup")
class SelfSupMaskFeat(MaskFeat):
    """MMSelfSup 1.x's ``MaskFeat``: the same computation with its head
    (``MaskFeatPretrainHead``), which receives the class token's prediction too."""

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        img = _one_view(inputs)
        pred, mask = self._predict(img, data_samples)
        target = self.target_generator(img)
        return {"loss": self.head(pred, target, mask)}
