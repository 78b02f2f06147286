"""MAE on HiViT: masked autoencoder pre-training (He et al., 2021, `Masked Autoencoders
Are Scalable Vision Learners <https://arxiv.org/abs/2111.06377>`_) with the hierarchical
encoder of `HiViT <https://arxiv.org/abs/2205.14949>`_, MMPretrain's ``MAEHiViT``.

The algorithm is vistra's :class:`~vistra.models.selfsup.mae.MAE` with its decoder and
head; only the encoder changes. HiViT embeds each 16x16 patch as a 4x4 grid of
sub-patches refined by MLP blocks and merged twice before the attention stage, so the
patches can be dropped *before* the stem: every stage runs on the visible patches only.
The absolute position embedding is the fixed 2-D sin-cos one (not trained). State-dict
keys are HiViT's (``patch_embed.*``, ``pos_embed``, ``blocks.{i}.*``), as MMPretrain's.

:func:`masked_hivit_forward` is the masked pass that iTPN's encoder shares
(vistra/models/selfsup/itpn.py).
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.backbones.hivit import HiViT, PatchMerge
from vistra.models.backbones.vision_transformer import _has_pretrained
from vistra.models.layers.pos_embed import build_2d_sincos_position_embedding
from vistra.models.selfsup.mae import random_masking
from vistra.registry import MODELS

__all__ = ["MAEHiViT", "hivit_masking_ids", "init_sincos_hivit", "masked_hivit_forward"]


def hivit_masking_ids(
    backbone: HiViT, batch: int, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids_keep, ids_restore, mask)`` for ``batch`` images of the backbone's patch grid.

    MAE's :func:`~vistra.models.selfsup.mae.random_masking` run on the patch indices: the
    tokens it keeps *are* the kept indices. It draws ``torch.rand(B, L)`` as MMPretrain's
    ``masking_id`` does (before the patch embedding, on the parameters' device), so a
    seeded run hides the same patches; ``noise`` ``(B, L)`` fixes the mask instead.
    """
    length = backbone.patch_embed.num_patches
    device = backbone.patch_embed.proj.weight.device
    index = torch.arange(length, device=device).expand(batch, length)[..., None]
    kept, mask, ids_restore = random_masking(index, mask_ratio, noise)
    return kept[..., 0], ids_restore, mask


def masked_hivit_forward(
    backbone: HiViT, x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """HiViT on the visible patches of ``x`` only.

    Returns ``(latent, mask, ids_restore, stem)``: ``latent`` ``(B, kept, C)`` after the
    last main block (no final norm, as upstream), ``mask`` ``(B, L)`` (1 = hidden),
    ``ids_restore`` ``(B, L)`` and ``stem``, the visible sub-patch grids entering each
    ``PatchMerge`` (``(B, kept, 4, 4, C/4)``, ``(B, kept, 2, 2, C/2)`` for HiViT-B), which
    iTPN's pyramid reads. The main blocks run without the relative position bias, which
    is sized for the full grid (MMPretrain does the same).
    """
    batch, _, height, width = x.shape
    ids_keep, ids_restore, mask = hivit_masking_ids(backbone, batch, mask_ratio, noise)
    x = backbone.patch_embed(x)
    index = ids_keep[:, :, None, None, None].expand(-1, -1, *x.shape[2:])
    x = torch.gather(x, 1, index)
    stem = []
    for block in backbone.blocks[: -backbone.num_main_blocks]:
        if isinstance(block, PatchMerge):
            stem.append(x)
        x = block(x)
    x = x[..., 0, 0, :]
    if backbone.pos_embed is not None:
        # with fewer tokens than the grid upstream always goes through the (near-identity)
        # bicubic resize; the same call keeps its numbers
        pos = backbone.interpolate_pos_encoding(x, height, width).expand(batch, -1, -1)
        x = x + torch.gather(pos, 1, ids_keep[:, :, None].expand(-1, -1, pos.shape[2]))
    x = backbone.pos_drop(x)
    for block in backbone.blocks[-backbone.num_main_blocks :]:
        x = block(x)
    return x, mask, ids_restore, stem


def init_sincos_hivit(backbone: HiViT) -> None:
    """MAE's fixed embedding: sin-cos ``pos_embed`` and a Xavier-uniform patch projection
    (its weight seen as a linear layer)."""
    if backbone.pos_embed is not None:
        side = int(backbone.patch_embed.num_patches**0.5)
        pos = build_2d_sincos_position_embedding(side, backbone.pos_embed.shape[-1])
        backbone.pos_embed.data.copy_(pos.float())
    weight = backbone.patch_embed.proj.weight.data
    nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))


def _check_mask_ratio(name: str, mask_ratio: float) -> None:
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"{name} mask_ratio must be in [0, 1), got {mask_ratio}")


@MODELS.register_module()
class MAEHiViT(HiViT):
    """HiViT encoder for MAE pre-training (MMPretrain's ``MAEHiViT`` arguments).

    ``forward(x)`` (``mask=True``) hides a random ``mask_ratio`` of the patches of each
    image and returns ``(latent, mask, ids_restore)`` (see :func:`masked_hivit_forward`;
    no class token: the MAE decoder reads the first visible token in its place, as
    upstream). ``forward(x, mask=None)`` (or ``False``) is the plain :class:`HiViT`
    forward on all patches; ``noise`` ``(B, L)`` fixes the mask.
    """

    def __init__(
        self,
        arch: str | dict = "b",
        img_size: int = 224,
        patch_size: int = 16,
        inner_patches: int = 4,
        out_indices: list[int] | int = (23,),
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        ape: bool = True,
        rpe: bool = False,
        layer_scale_init_value: float = 0.0,
        mask_ratio: float = 0.75,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        _check_mask_ratio("MAEHiViT", mask_ratio)
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            inner_patches=inner_patches,
            out_indices=[out_indices] if isinstance(out_indices, int) else list(out_indices),
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg,
            ape=ape,
            rpe=rpe,
            layer_scale_init_value=layer_scale_init_value,
            init_cfg=init_cfg,
        )
        if self.pos_embed is not None:
            self.pos_embed.requires_grad = False  # fixed sin-cos, filled in init_weights
        self.mask_ratio = mask_ratio
        self.num_patches = self.patch_embed.num_patches

    def init_weights(self) -> None:
        """HiViT's initialisation, then MAE's sin-cos position embedding and Xavier patch
        projection (skipped when the backbone loads a checkpoint)."""
        if self.is_init:
            return
        super().init_weights()
        if not _has_pretrained(self.init_cfg):
            init_sincos_hivit(self)

    def masking_id(
        self, batch_size: int, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids_keep, ids_restore, mask)``, see :func:`hivit_masking_ids`."""
        return hivit_masking_ids(self, batch_size, mask_ratio, noise)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: bool | None = True, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        if mask is None or mask is False:
            return super().forward(x)
        latent, patch_mask, ids_restore, _ = masked_hivit_forward(self, x, self.mask_ratio, noise)
        return latent, patch_mask, ids_restore
