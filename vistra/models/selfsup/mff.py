"""MFF: MAE with multi-level feature fusion (Liu et al., 2023, `Improving Pixel-based MIM
by Reducing Wasted Modeling Capability <https://arxiv.org/abs/2308.00261>`_), as
MMPretrain's ``MFF`` and ``MFFViT``.

The encoder keeps the outputs of the layers in ``out_indices``; each but the last goes
through its own linear projection, and their softmax-weighted sum (weights
``proj_weights``, one per level) passes the final norm to MAE's pixel decoder. The loss is
MAE's; the loss dict also logs each level's weight (``weight_{i}``). Keys: MAE's plus
``backbone.proj_layers.{i}.*`` and ``backbone.proj_weights`` ``(levels, 1, 1, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.selfsup.mae import MAE, MAEViT, _one_view
from vistra.registry import MODELS

__all__ = ["MFF", "MFFViT"]


@MODELS.register_module()
class MFFViT(MAEViT):
    """:class:`MAEViT` fusing the outputs of the ``out_indices`` layers (see the module
    docstring). The masked forward returns ``(latent, mask, ids_restore, weights)``,
    ``weights`` the softmax of ``proj_weights`` ``(levels,)``; ``mask=None`` is the plain
    ViT forward."""

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
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            mask_ratio=mask_ratio,
            init_cfg=init_cfg,
        )
        levels = len(self.out_indices)
        self.proj_layers = nn.ModuleList(
            nn.Linear(self.embed_dims, self.embed_dims) for _ in range(levels - 1)
        )
        self.proj_weights = nn.Parameter(torch.ones(levels).view(-1, 1, 1, 1))
        if levels == 1:  # one level: the softmax weight is 1 whatever the parameter
            self.proj_weights.requires_grad = False

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: bool | None = True, noise: torch.Tensor | None = None
    ) -> Any:
        """``noise`` ``(B, L)`` fixes the mask (see :func:`~vistra.models.selfsup.mae.random_masking`)."""
        if mask is None or mask is False:
            return super(MAEViT, self).forward(x)
        batch = x.shape[0]
        x = self.patch_embed(x)[0] + self.pos_embed[:, 1:]
        x, patch_mask, ids_restore = self.random_masking(x, self.mask_ratio, noise)
        cls_token = (self.cls_token + self.pos_embed[:, :1]).expand(batch, -1, -1)
        x = torch.cat((cls_token, x), dim=1)
        levels = []
        last = self.out_indices[-1]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices:
                # the deepest level enters as it is, the others through their projection
                proj = x if i == last else self.proj_layers[self.out_indices.index(i)](x)
                levels.append(proj)
        weights = self.proj_weights.softmax(dim=0)
        fused = (torch.stack(levels) * weights).sum(dim=0)
        return self.ln1(fused), patch_mask, ids_restore, weights.view(-1)


@MODELS.register_module()
class MFF(MAE):
    """MFF: MAE with an :class:`MFFViT` encoder. ``mode='loss'`` gives ``{'loss': ...,
    'weight_0': ..., ...}``, the fusion weights logged beside the loss."""

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        noise: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        inputs = _one_view(inputs)
        latent, mask, ids_restore, weights = self.backbone(inputs, noise=noise)
        pred = self.neck(latent, ids_restore)
        losses = {"loss": self.head.loss(pred, inputs, mask)}
        losses.update({f"weight_{i}": w for i, w in enumerate(weights)})
        return losses

    @torch.no_grad()
    def reconstruct(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("MFF.reconstruct is not provided (MFFViT returns 4 values)")
