"""``SimMIMViT``: SimMIM's masked-token encoder on a plain ViT (vistra's own type).

Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling" (2022) pre-train Swin
*and* ViT; MMPretrain and MMSelfSup ship only the Swin encoder (``SimMIMSwinTransformer``).
This is the ViT one of the paper: the patch embeddings that the mask hides are replaced
by one learnt ``mask_token`` before the position embedding is added, every token goes
through the encoder, and the patch tokens come out as a ``(B, C, H/p, W/p)`` map for
``SimMIMLinearDecoder`` (``encoder_stride`` = the patch size).

The keys are :class:`~vistra.models.backbones.vision_transformer.VisionTransformer`'s
plus ``mask_token``, so a ``VisionTransformer`` probe or fine-tuning loads the backbone
(``mask_token`` shows as unexpected in the load report, as it should). The mask is the
pipeline's (``SimMIMMaskGenerator`` with ``model_patch_size`` = the patch size).
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.backbones.vision_transformer import VisionTransformer
from vistra.models.layers.transformer import resize_pos_embed
from vistra.registry import MODELS


@MODELS.register_module()
class SimMIMViT(VisionTransformer):
    """A ViT whose masked patches become ``mask_token``; outputs patch-token maps."""

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        out_indices: int | tuple[int, ...] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch=arch, img_size=img_size, patch_size=patch_size, in_channels=in_channels,
            out_indices=out_indices, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias, norm_cfg=norm_cfg, final_norm=final_norm, out_type="featmap",
            interpolate_mode=interpolate_mode, patch_cfg=patch_cfg, layer_cfgs=layer_cfgs,
            init_cfg=init_cfg,
        )  # fmt: skip
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.trunc_normal_(self.mask_token, mean=0.0, std=0.02)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``mask`` ``(B, H/p, W/p)``, 1 where hidden; None: the plain encoder."""
        if mask is None:
            return super().forward(x)
        tokens, grid = self.patch_embed(x)
        batch, length, _ = tokens.shape
        if mask[0].numel() != length:
            raise ValueError(
                f"SimMIMViT: the mask has {mask[0].numel()} entries per image, the patch grid "
                f"{tuple(grid)} has {length}; give SimMIMMaskGenerator model_patch_size = "
                "the ViT's patch_size"
            )
        hidden = mask.flatten(1).unsqueeze(-1).type_as(tokens)
        tokens = tokens * (1.0 - hidden) + self.mask_token.expand(batch, length, -1) * hidden
        tokens = torch.cat((self.cls_token.expand(batch, -1, -1), tokens), dim=1)
        tokens = tokens + resize_pos_embed(
            self.pos_embed, self.patch_resolution, grid, mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens,
        )  # fmt: skip
        return self._encode(self.pre_norm(self.drop_after_pos(tokens)), grid)
