"""MAE: masked autoencoder pre-training (He et al., 2021), MMPretrain- and MMSelfSup-compatible.

Model-family file: the encoder ``MAEViT`` (and MMSelfSup 1.x's variant of it, scope
``mmselfsup``), then the algorithm ``MAE``. The decoder (``MAEPretrainDecoder``), the head
and the losses (``MAEPretrainHead``, ``PixelReconstructionLoss``, MMSelfSup's
``MAEReconstructionLoss``) and ``SelfSupDataPreprocessor`` live in the modules next to
this one. State-dict keys equal MMPretrain's and MMSelfSup 1.x's (the same layout:
``backbone.*`` of the ViT, ``neck.*`` of the decoder, nothing for the head), so published
MAE checkpoints of either load strictly and a classifier takes the encoder with
``init_cfg=dict(type='Pretrained', prefix='backbone.')``. The mask can be fixed by passing
the ``(B, L)`` noise it is drawn from (``MAE.loss(..., noise=...)``).

One pre-training step: the encoder embeds the patches, adds the fixed sin-cos position
embedding, keeps a random ``1 - mask_ratio`` of the patches per image and runs its layers
on those only (the speed-up of MAE); the decoder fills in mask tokens and predicts every
patch; the loss is taken over the hidden patches only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.vision_transformer import VisionTransformer, _has_pretrained
from vistra.models.layers.pos_embed import build_2d_sincos_position_embedding
from vistra.models.layers.transformer import resize_pos_embed
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.mae_decoder import MAEPretrainDecoder
from vistra.models.selfsup.mae_head import (
    MAEPretrainHead,
    MAEReconstructionLoss,
    PixelReconstructionLoss,
)
from vistra.registry import MODELS

__all__ = [
    "MAE",
    "MAEPretrainDecoder",
    "MAEPretrainHead",
    "MAEReconstructionLoss",
    "MAEViT",
    "SelfSupMAEViT",
    "PixelReconstructionLoss",
    "random_masking",
]


def random_masking(
    x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random ``int(L * (1 - mask_ratio))`` of the ``L`` tokens of each sample.

    Every sample draws its own uniform noise (or takes row ``b`` of ``noise``, ``(B, L)``:
    a fixed mask, e.g. to reproduce a run); the tokens with the smallest noise stay.
    Returns the kept tokens ``(B, keep, C)`` (in shuffled order), the mask ``(B, L)``
    (1 = removed, 0 = kept, in image order) and ``ids_restore`` ``(B, L)``, the
    permutation that puts ``[kept, removed]`` back in image order.
    """
    batch, length, dims = x.shape
    keep = int(length * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(batch, length, device=x.device)
    elif tuple(noise.shape) != (batch, length):
        raise ValueError(
            f"MAE masking noise must be (batch, patches) = ({batch}, {length}), got "
            f"{tuple(noise.shape)}"
        )
    noise = noise.to(x.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dims))
    mask = torch.ones(batch, length, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return kept, mask, ids_restore


@MODELS.register_module()
class MAEViT(VisionTransformer):
    """ViT encoder for MAE pre-training (MMPretrain's ``MAEViT``).

    ``forward(x)`` (``mask=True``) masks a random ``mask_ratio`` of the patches of each
    image and returns ``(latent, mask, ids_restore)``: ``latent`` ``(B, 1 + kept, C)``
    (class token first, after the final norm), ``mask`` ``(B, L)`` with 1 for removed
    patches and ``ids_restore`` ``(B, L)``. ``forward(x, mask=None)`` (or ``False``) is
    the plain :class:`VisionTransformer` forward on all patches, shaped by ``out_type``
    (features for probing). ``forward(x, noise=...)`` takes the masking noise instead of
    drawing it. The position embedding is the fixed 2-D sin-cos one and is not trained.
    """

    def __init__(
        self,
        arch: str | dict = "b",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        out_type: str = "raw",
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        mask_ratio: float = 0.75,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"MAEViT mask_ratio must be in [0, 1), got {mask_ratio}")
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            with_cls_token=True,
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg,
        )
        self.pos_embed.requires_grad = False  # fixed sin-cos, filled in init_weights
        self.mask_ratio = mask_ratio
        self.num_patches = self.patch_resolution[0] * self.patch_resolution[1]

    def init_weights(self) -> None:
        """MMPretrain's MAE initialisation: sin-cos ``pos_embed``, Xavier-uniform patch
        projection (as a linear layer), ``cls_token ~ N(0, 0.02)``. Skipped when this
        backbone loads a checkpoint, which carries all three."""
        if self.is_init:
            return
        super().init_weights()
        if _has_pretrained(self.init_cfg):
            return
        pos = build_2d_sincos_position_embedding(
            self.patch_resolution, self.embed_dims, cls_token=True
        )
        self.pos_embed.data.copy_(pos)
        weight = self.patch_embed.projection.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float = 0.75, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """See :func:`random_masking`."""
        return random_masking(x, mask_ratio, noise)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: bool | None = True, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``noise`` ``(B, L)`` fixes the mask (see :func:`random_masking`)."""
        if mask is None or mask is False:
            return super().forward(x)
        batch = x.shape[0]
        x, grid = self.patch_embed(x)
        pos = resize_pos_embed(
            self.pos_embed, self.patch_resolution, grid, self.interpolate_mode, 1
        )
        x = x + pos[:, 1:]
        x, patch_mask, ids_restore = self.random_masking(x, self.mask_ratio, noise)
        cls_token = (self.cls_token + pos[:, :1]).expand(batch, -1, -1)
        x = torch.cat((cls_token, x), dim=1)
        for layer in self.layers:
            x = layer(x)
        if self.final_norm:
            x = self.ln1(x)
        return x, patch_mask, ids_restore


@MODELS.register_module(name="MAEViT", scope="mmselfsup")
class SelfSupMAEViT(MAEViT):
    """MMSelfSup 1.x's ``MAEViT``: the same encoder, parameters and masking, with the
    arguments of the mmcls 1.0 ViT it derives from: ``output_cls_token`` instead of
    ``out_type``. MMSelfSup's encoder only has the masked forward; the plain one
    (``forward(x, mask=None)``) gives the tokens with the class token first
    (``out_type='raw'``) when ``output_cls_token`` is True, else the patch feature map.
    """

    def __init__(
        self,
        arch: str | dict = "b",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        output_cls_token: bool = True,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        mask_ratio: float = 0.75,
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
            out_type="raw" if output_cls_token else "featmap",
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            mask_ratio=mask_ratio,
            init_cfg=init_cfg,
        )
        self.output_cls_token = output_cls_token


@MODELS.register_module()
class MAE(BaseSelfSupervisor):
    """MAE, `Masked Autoencoders Are Scalable Vision Learners
    <https://arxiv.org/abs/2111.06377>`_: ``backbone`` (:class:`MAEViT`), ``neck``
    (:class:`MAEPretrainDecoder`) and ``head`` (:class:`MAEPretrainHead`).

    ``mode='loss'`` gives ``{'loss': reconstruction loss}``; ``mode='tensor'`` (and
    :meth:`extract_feat`) the backbone's features of the unmasked image.
    """

    def extract_feat(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.backbone(_one_view(inputs), mask=None)

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        noise: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """``{'loss': ...}``; ``noise`` ``(B, L)`` fixes the mask instead of drawing it."""
        inputs = _one_view(inputs)
        latent, mask, ids_restore = self.backbone(inputs, noise=noise)
        pred = self.neck(latent, ids_restore)
        return {"loss": self.head.loss(pred, inputs, mask)}

    @torch.no_grad()
    def reconstruct(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        norm_pix: bool | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask ``inputs`` (normalised ``NCHW`` images) at random and reconstruct them.

        Returns ``(pred, mask)``: the predicted images ``(B, C, H, W)`` in the same
        normalised space as ``inputs``, and ``(B, 1, H, W)`` with 1 on the pixels of the
        patches the encoder did not see. A model trained with ``norm_pix`` predicts
        standardised patches; they are mapped back with the statistics of the input's
        own patches (``norm_pix=None`` follows the head's setting). ``noise`` fixes the mask.
        """
        inputs = _one_view(inputs)
        latent, mask, ids_restore = self.backbone(inputs, noise=noise)
        pred = self.neck(latent, ids_restore).float()
        head = self.head
        norm_pix = head.norm_pix if norm_pix is None else norm_pix
        if norm_pix:
            mean, std = head.patch_stats(inputs.float())
            pred = pred * std + mean
        grid = (inputs.shape[-2] // head.patch_size, inputs.shape[-1] // head.patch_size)
        pred_img = head.unpatchify(pred, grid)
        patch_mask = mask[:, :, None].expand(-1, -1, head.patch_size**2)
        mask_img = unpatchify_mask(patch_mask, head.patch_size, grid)
        return pred_img, mask_img


def unpatchify_mask(mask: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, L, p*p)`` per-patch values -> a ``(B, 1, H, W)`` image."""
    batch = mask.shape[0]
    gh, gw = grid
    img = mask.reshape(batch, gh, gw, patch_size, patch_size).permute(0, 1, 3, 2, 4)
    return img.reshape(batch, 1, gh * patch_size, gw * patch_size)


def _one_view(inputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """MAE uses one view; a one-element list of views (a multi-view pipeline) is unwrapped."""
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 1:
            raise ValueError(
                f"MAE takes one view of each image, got {len(inputs)} views; remove MultiView "
                "from the pipeline"
            )
        return inputs[0]
    return inputs
