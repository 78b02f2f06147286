"""iTPN, `Integrally Pre-Trained Transformer Pyramid Networks
<https://arxiv.org/abs/2211.12735>`_ (Tian et al., 2022), with MMPretrain's types:
``iTPNHiViT`` (encoder), ``iTPNPretrainDecoder`` (pyramid + decoder), ``iTPNClipHead`` and
the algorithm ``iTPN``.

Where MAE pre-trains the encoder alone, iTPN pre-trains the feature pyramid with it: the
HiViT encoder's last main-stage tokens and the sub-patch grids of its two stem stages
(before each patch merge) feed a transformer pyramid (MLP blocks, ``PatchSplit``
up-sampling with lateral projections) whose levels are projected and summed into one
token per patch. Two targets:

- ``reconstruction_type='pixel'``: MAE's. The encoder sees only the visible patches
  (:func:`~vistra.models.selfsup.mae_hivit.masked_hivit_forward`); the summed pyramid
  tokens get mask tokens and a fixed sin-cos position embedding and go through a small
  ViT decoder that predicts each patch's (normalised) pixels, scored on the hidden
  patches by MAE's head (``MAEPretrainHead``).
- ``'clip'``: the encoder sees every patch, the hidden ones (the pipeline's
  ``BEiTMaskGenerator`` mask) replaced by a learned ``mask_token``; the normalised
  pyramid tokens of the hidden patches are projected (``iTPNClipHead``) and compared
  with the features a frozen CLIP ViT (``CLIPGenerator``) gives for the second view.

State-dict keys and shapes equal MMPretrain 1.2.0's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.hivit import BlockWithRPE, HiViT, PatchMerge
from vistra.models.backbones.vision_transformer import TransformerEncoderLayer, _has_pretrained
from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import build_2d_sincos_position_embedding
from vistra.models.selfsup.base import BaseSelfSupervisor, stacked_field
from vistra.models.selfsup.mae import _one_view
from vistra.models.selfsup.mae_hivit import (
    _check_mask_ratio,
    hivit_masking_ids,
    init_sincos_hivit,
    masked_hivit_forward,
)
from vistra.registry import MODELS

__all__ = ["PatchSplit", "iTPN", "iTPNClipHead", "iTPNHiViT", "iTPNPretrainDecoder"]

RECONSTRUCTION_TYPES = ("pixel", "clip")


def _check_type(name: str, reconstruction_type: str) -> None:
    if reconstruction_type not in RECONSTRUCTION_TYPES:
        raise ValueError(
            f"{name} reconstruction_type must be one of {RECONSTRUCTION_TYPES}, got "
            f"{reconstruction_type!r}"
        )


def _rescale_blocks(blocks: Sequence[nn.Module]) -> None:
    """BEiT's depth scaling: the residual output projections of the ``i``-th entry (from 1,
    counting every entry, as upstream) are divided by ``sqrt(2 i)``."""
    for layer_id, layer in enumerate(blocks, start=1):
        if isinstance(layer, BlockWithRPE):
            if layer.attn is not None:
                layer.attn.proj.weight.data.div_(math.sqrt(2.0 * layer_id))
            layer.mlp.fc2.weight.data.div_(math.sqrt(2.0 * layer_id))


# ---------------------------------------------------------------------------- encoder
@MODELS.register_module()
class iTPNHiViT(HiViT):  # noqa: N801 (upstream's name)
    """HiViT encoder for iTPN (MMPretrain's arguments, plus HiViT's remaining ones).

    ``forward(x)`` with ``reconstruction_type='pixel'`` returns ``(feats, mask,
    ids_restore)``: ``feats`` the visible tokens of the two stem stages and the main stage
    (see the module docstring), ``noise`` ``(B, L)`` fixing the random mask.
    With ``'clip'``, ``forward(x, mask)`` takes the ``(B, h, w)`` (or ``(B, L)``) mask of
    hidden patches and returns the three levels of every patch. ``mask=None`` is the
    plain :class:`HiViT` forward.
    """

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int = 224,
        patch_size: int = 16,
        inner_patches: int = 4,
        stem_mlp_ratio: float = 3.0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        ape: bool = True,
        rpe: bool = False,
        layer_scale_init_value: float = 0.0,
        mask_ratio: float = 0.75,
        reconstruction_type: str = "pixel",
        in_chans: int = 3,
        out_indices: Sequence[int] = (23,),
        patch_norm: bool = True,
        frozen_stages: int = -1,
        kernel_size: int | None = None,
        pad_size: int | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        _check_mask_ratio("iTPNHiViT", mask_ratio)
        _check_type("iTPNHiViT", reconstruction_type)
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            inner_patches=inner_patches,
            in_chans=in_chans,
            stem_mlp_ratio=stem_mlp_ratio,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg,
            out_indices=out_indices,
            ape=ape,
            rpe=rpe,
            patch_norm=patch_norm,
            frozen_stages=frozen_stages,
            kernel_size=kernel_size,
            pad_size=pad_size,
            layer_scale_init_value=layer_scale_init_value,
            init_cfg=init_cfg,
        )
        if self.pos_embed is not None:
            self.pos_embed.requires_grad = False  # fixed (sin-cos for 'pixel'), as upstream
        self.mask_ratio = mask_ratio
        self.reconstruction_type = reconstruction_type
        self.num_patches = self.patch_embed.num_patches
        if reconstruction_type == "clip":
            self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def init_weights(self) -> None:
        """HiViT's initialisation; then for 'pixel' MAE's sin-cos position embedding and
        Xavier patch projection, for 'clip' a ``N(0, 0.02)`` mask token and the depth
        rescaling of the blocks' output projections (upstream's; its clip position
        embedding stays truncated-normal and frozen)."""
        if self.is_init:
            return
        super().init_weights()
        if _has_pretrained(self.init_cfg):
            return
        if self.reconstruction_type == "clip":
            nn.init.trunc_normal_(self.mask_token, std=0.02)
            _rescale_blocks(self.blocks)
        else:
            init_sincos_hivit(self)

    def masking_id(
        self, batch_size: int, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids_keep, ids_restore, mask)``, see :func:`hivit_masking_ids`."""
        return hivit_masking_ids(self, batch_size, mask_ratio, noise)

    def forward_pixel(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
        latent, mask, ids_restore, stem = masked_hivit_forward(self, x, self.mask_ratio, noise)
        return (*stem, latent), mask, ids_restore

    def forward_clip(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        height, width = x.shape[-2:]
        x = self.patch_embed(x)
        outs = []
        for block in self.blocks[: -self.num_main_blocks]:
            if isinstance(block, PatchMerge):
                outs.append(x)
            x = block(x)
        x = x[..., 0, 0, :]
        batch, length, _ = x.shape
        mask_token = self.mask_token.expand(batch, length, -1)
        hidden = mask.flatten(1).unsqueeze(-1).type_as(mask_token)
        if hidden.shape[1] != length:
            raise ValueError(
                f"iTPNHiViT: the mask has {hidden.shape[1]} patches, the image {length}; "
                "the mask generator's input_size must be the patch grid"
            )
        x = x * (1.0 - hidden) + mask_token * hidden
        if self.pos_embed is not None:
            x = x + self.interpolate_pos_encoding(x, height, width)
        x = self.pos_drop(x)
        rpe_index = True if self.rpe else None
        for block in self.blocks[-self.num_main_blocks :]:
            x = block(x, rpe_index)
        outs.append(x)
        return tuple(outs)

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        mask: bool | torch.Tensor | None = True,
        noise: torch.Tensor | None = None,
    ) -> tuple:
        if mask is None or mask is False:
            return super().forward(x)
        if self.reconstruction_type == "pixel":
            return self.forward_pixel(x, noise)
        if not torch.is_tensor(mask):
            raise ValueError("iTPNHiViT(reconstruction_type='clip') needs the patch mask tensor")
        return self.forward_clip(x, mask)


# ---------------------------------------------------------------------------- pyramid
class PatchSplit(nn.Module):
    """Up-sampling of the pyramid: each token of a ``(B, N, s, s, C)`` grid becomes 2x2
    tokens of ``fpn_dim`` (``norm``, then the linear ``reduction`` to ``4 * fpn_dim``)."""

    def __init__(self, dim: int, fpn_dim: int, norm_cfg: dict) -> None:
        super().__init__()
        self.norm = build_norm_layer(norm_cfg, dim)[1]
        self.reduction = nn.Linear(dim, fpn_dim * 4, bias=False)
        self.fpn_dim = fpn_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, height, width, _ = x.shape
        x = self.reduction(self.norm(x)).reshape(batch, tokens, height, width, 2, 2, -1)
        x = x.permute(0, 1, 2, 4, 3, 5, 6)
        return x.reshape(batch, tokens, 2 * height, 2 * width, self.fpn_dim)


@MODELS.register_module()
class iTPNPretrainDecoder(BaseModule):  # noqa: N801 (upstream's name)
    """iTPN's neck: the transformer pyramid and, for 'pixel', MAE's decoder.

    ``num_outs`` pyramid levels (2 or 3: the main stage, then one per stem stage) of
    ``fpn_dim`` channels, ``fpn_depth`` MLP blocks per up-sampling; ``embed_dim`` is the
    encoder's main width. ``forward(feats, ids_restore)`` returns ``(B, L,
    predict_feature_dim)`` pixel predictions in image order ('pixel') or, with
    ``forward(feats)``, the ``(B, L, embed_dim)`` normalised tokens ('clip').
    """

    def __init__(
        self,
        num_patches: int = 196,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 512,
        fpn_dim: int = 256,
        fpn_depth: int = 2,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 6,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4,
        norm_cfg: dict | None = None,
        reconstruction_type: str = "pixel",
        num_outs: int = 3,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        predict_feature_dim: int | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        _check_type("iTPNPretrainDecoder", reconstruction_type)
        # upstream builds more levels than 3 only in part (and fails in forward)
        if num_outs not in (2, 3):
            raise ValueError(f"iTPNPretrainDecoder num_outs must be 2 or 3, got {num_outs}")
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        self.num_patches = num_patches
        self.reconstruction_type = reconstruction_type
        self.num_outs = num_outs

        def mlp_block() -> BlockWithRPE:
            return BlockWithRPE(
                None,  # type: ignore[arg-type]  # MLP-only: no attention grid
                fpn_dim,
                0,
                mlp_ratio,
                qkv_bias,
                qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=0.0,
                rpe=False,
                norm_cfg=norm_cfg,
            )

        # the pyramid (attribute order = upstream's key order)
        self.align_dim_16tofpn = nn.Linear(embed_dim, fpn_dim) if embed_dim != fpn_dim else None
        self.fpn_modules = nn.ModuleList([mlp_block(), mlp_block()])
        self.align_dim_16to8 = nn.Linear(embed_dim // 2, fpn_dim, bias=False)
        self.split_16to8 = PatchSplit(embed_dim, fpn_dim, norm_cfg)
        self.block_16to8 = nn.Sequential(*[mlp_block() for _ in range(fpn_depth)])
        if num_outs > 2:
            self.align_dim_8to4 = nn.Linear(embed_dim // 4, fpn_dim, bias=False)
            self.split_8to4 = PatchSplit(fpn_dim, fpn_dim, norm_cfg)
            self.block_8to4 = nn.Sequential(*[mlp_block() for _ in range(fpn_depth)])
            self.fpn_modules.append(mlp_block())

        # level i has 4**i sub-tokens per patch: their projections concatenate to one token
        self.decoder_embed = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(fpn_dim), nn.Linear(fpn_dim, decoder_embed_dim // 4**i))
            for i in range(num_outs)
        )
        if reconstruction_type == "pixel":
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
            self.decoder_pos_embed = nn.Parameter(
                torch.zeros(1, num_patches, decoder_embed_dim), requires_grad=False
            )  # fixed sin-cos (init_weights), no class token
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
        else:
            self.norm = build_norm_layer(norm_cfg, embed_dim)[1]

    @property
    def decoder_norm(self) -> nn.Module:
        return getattr(self, self.decoder_norm_name)

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        if self.reconstruction_type == "pixel":
            pos = build_2d_sincos_position_embedding(
                int(self.num_patches**0.5), self.decoder_pos_embed.shape[-1]
            )
            self.decoder_pos_embed.data.copy_(pos.float())
            nn.init.normal_(self.mask_token, std=0.02)
        else:
            _rescale_blocks(self.fpn_modules)

    def pyramid(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``(stem_4x4, stem_2x2, main)`` encoder features -> the ``num_outs`` levels,
        ``(B, N, s, s, fpn_dim)`` with ``s`` = 1, 2, 4."""
        x = feats[-1][..., None, None, :]
        outs = [x if self.align_dim_16tofpn is None else self.align_dim_16tofpn(x)]
        x = self.block_16to8(self.split_16to8(x) + self.align_dim_16to8(feats[1]))
        outs.append(x)
        if self.num_outs > 2:
            x = self.block_8to4(self.split_8to4(x) + self.align_dim_8to4(feats[0]))
            outs.append(x)
        return [block(out) for block, out in zip(self.fpn_modules, outs)]

    def forward(
        self, x: Sequence[torch.Tensor], ids_restore: torch.Tensor | None = None
    ) -> torch.Tensor:
        if len(x) < 3 and self.num_outs > 2 or len(x) < 2:
            raise ValueError(
                f"iTPNPretrainDecoder(num_outs={self.num_outs}) needs the encoder's stem and "
                f"main features, got {len(x)} tensors"
            )
        batch, length = x[-1].shape[:2]
        levels = [
            embed(level).reshape(batch, length, -1)
            for level, embed in zip(self.pyramid(x), self.decoder_embed)
        ]
        if self.reconstruction_type == "clip":
            out = levels[0]
            for level in levels[1:]:
                out = out + level
            return self.norm(out)
        if ids_restore is None:
            raise ValueError("iTPNPretrainDecoder('pixel') needs ids_restore")
        full = []
        for level in levels:  # visible tokens + mask tokens, back in image order
            hidden = self.mask_token.expand(batch, ids_restore.shape[1] - length, -1)
            tokens = torch.cat([level, hidden.to(level.dtype)], dim=1)
            index = ids_restore.unsqueeze(-1).expand(-1, -1, tokens.shape[2])
            full.append(torch.gather(tokens, 1, index))
        out = full[0] + self.decoder_pos_embed
        for level in full[1:]:
            out = out + level
        for block in self.decoder_blocks:
            out = block(out)
        return self.decoder_pred(self.decoder_norm(out))


# ---------------------------------------------------------------------------- head
@MODELS.register_module()
class iTPNClipHead(BaseModule):  # noqa: N801 (upstream's name)
    """Projects the tokens of the hidden patches (``cls_head``, ``embed_dims`` ->
    ``num_embed``) and applies ``loss`` against the target features of the same patches."""

    def __init__(
        self,
        embed_dims: int,
        num_embed: int,
        loss: dict | nn.Module,
        init_cfg: dict | list[dict] | None = dict(  # noqa: B006 (upstream's default)
            type="TruncNormal", layer="Linear", std=0.02, bias=0
        ),
    ) -> None:
        super().__init__(init_cfg)
        self.cls_head = nn.Linear(embed_dims, num_embed)
        self.loss_module = (
            loss if isinstance(loss, nn.Module) else MODELS.build(loss, key_path="model.head.loss")
        )

    def loss(self, feats: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``feats`` ``(B, L, C)``, ``target`` ``(B, L, D)``, ``mask`` ``(B, h, w)`` or
        ``(B, L)`` with 1 on the hidden patches."""
        hidden = mask.to(feats.device).flatten(1).bool()
        return self.loss_module(self.cls_head(feats[hidden]), target[hidden])


# ---------------------------------------------------------------------------- algorithm
@MODELS.register_module()
class iTPN(BaseSelfSupervisor):  # noqa: N801 (upstream's name)
    """iTPN; ``backbone`` :class:`iTPNHiViT`, ``neck`` :class:`iTPNPretrainDecoder`,
    ``head`` ``MAEPretrainHead`` ('pixel') or :class:`iTPNClipHead` with a
    ``target_generator`` (``CLIPGenerator``, 'clip'). The backbone's
    ``reconstruction_type`` picks the branch.

    'pixel' takes one view (``noise`` ``(B, L)`` fixes the mask); 'clip' two views, the
    image and the target generator's image, and each sample's ``mask``.
    """

    def extract_feat(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.backbone(_one_view(inputs), mask=None)

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.backbone.reconstruction_type == "pixel":
            inputs = _one_view(inputs)
            latent, mask, ids_restore = self.backbone(inputs, noise=noise)
            pred = self.neck(latent, ids_restore)
            return {"loss": self.head.loss(pred, inputs, mask)}
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "iTPN with CLIP targets takes two views (the image and the CLIP image): use "
                "RandomResizedCropAndInterpolationWithTwoPic and TwoNormDataPreprocessor"
            )
        if self.target_generator is None:
            raise ValueError("iTPN with CLIP targets needs model.target_generator")
        mask = stacked_field(data_samples or [], "mask").to(inputs[0].device)
        latent = self.backbone(inputs[0], mask)
        with torch.no_grad():
            target = self.target_generator(inputs[1])[0].detach()
        feats = self.neck(latent)
        return {"loss": self.head.loss(feats, target[:, 1:, :], mask)}
