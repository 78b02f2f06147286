"""MixMIM pre-training (`MixMIM: Mixed and Masked Image Modeling for Efficient Visual
Representation Learning <https://arxiv.org/abs/2205.13137>`_), MMPretrain- and
MMSelfSup-compatible.

One step: a random ``mask_ratio`` of the ``(H/32) x (W/32)`` cells of the final stage is
drawn once for the whole batch (``torch.rand(1, 1, L)``) and upsampled to every stage's
grid. Each image's masked tokens are replaced by those of the image at the mirrored batch
position (``x.flip(0)``), so one input carries two images; the encoder
(:class:`MixMIMPretrainTransformer`) keeps them apart with a mask in each window
attention. The decoder (:class:`MixMIMPretrainDecoder`) fills the masked positions with a
mask token to predict the first image, and the visible ones to predict the second, stacked
on the batch axis; the head (:class:`MixMIMPretrainHead`) un-mixes both halves into one
prediction per image and takes a pixel loss against its ``32 x 32`` patches (over every
patch, not only the masked ones).

Types and names: ``MixMIM``, ``MixMIMPretrainTransformer`` (MMPretrain) and
``MixMIMTransformerPretrain`` (MMSelfSup; its mask ratio is the forward's default 0.5),
``MixMIMPretrainDecoder``, ``MixMIMPretrainHead``. State-dict keys are upstream's (the same
in both packages): ``backbone.*`` as :class:`~vistra.models.backbones.mixmim.MixMIMTransformer`,
``neck.{mask_token,decoder_pos_embed,decoder_embed,decoder_blocks.*,ln1,decoder_pred}``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.mixmim import MixMIMTransformer
from vistra.models.layers.pos_embed import build_2d_sincos_position_embedding
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.mae_decoder import MAEPretrainDecoder
from vistra.models.selfsup.mae_head import MAEPretrainHead
from vistra.registry import MODELS

__all__ = [
    "MixMIM",
    "MixMIMPretrainDecoder",
    "MixMIMPretrainHead",
    "MixMIMPretrainTransformer",
    "SelfSupMixMIMTransformerPretrain",
]


@MODELS.register_module()
class MixMIMPretrainTransformer(MixMIMTransformer):
    """The MixMIM encoder for pre-training (MMPretrain's arguments).

    ``forward(x)`` mixes pairs of images and returns ``(tokens, mask)``: the normed final
    tokens ``(B, L, C)`` and the mask ``(1, L, 1)`` (1: the token comes from the mirrored
    image). ``forward(x, mask=None)`` is the plain classification forward. The mask ratio
    is ``mask_ratio`` plus a uniform draw in ``[0, range_mask_ratio]``.
    """

    def __init__(
        self,
        arch: str | dict = "base",
        mlp_ratio: float = 4,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_channels: int = 3,
        window_size: Sequence[int] = (14, 14, 14, 7),
        qkv_bias: bool = True,
        patch_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        use_checkpoint: bool = False,
        mask_ratio: float = 0.5,
        range_mask_ratio: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch=arch,
            mlp_ratio=mlp_ratio,
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            window_size=window_size,
            qkv_bias=qkv_bias,
            patch_cfg=patch_cfg,
            norm_cfg=norm_cfg,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            attn_drop_rate=attn_drop_rate,
            use_checkpoint=use_checkpoint,
            init_cfg=init_cfg,
        )
        if not 0.0 <= mask_ratio <= 1.0 or range_mask_ratio < 0.0:
            raise ValueError(
                f"{type(self).__name__}: mask_ratio must be in [0, 1] and range_mask_ratio "
                f">= 0, got mask_ratio={mask_ratio}, range_mask_ratio={range_mask_ratio}"
            )
        self.mask_ratio = mask_ratio
        self.range_mask_ratio = range_mask_ratio

    def init_weights(self) -> None:
        """Sin-cos ``absolute_pos_embed``, Xavier-uniform linear layers with zero biases,
        unit LayerNorms (MMPretrain's pre-training initialisation)."""
        if self.is_init:
            return
        super().init_weights()
        if isinstance(self.init_cfg, dict) and self.init_cfg.get("type") == "Pretrained":
            return
        side = int(self.num_patches**0.5)
        pos = build_2d_sincos_position_embedding(side, self.embed_dims, cls_token=False)
        self.absolute_pos_embed.data.copy_(pos.float())
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float = 0.5
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch-wide mask at the final stride and at strides 4, 8 and 16 of the
        encoder's 32, each ``(1, h*w, 1)`` (1: mixed in from the mirrored image)."""
        _, _, h, w = x.shape
        out_h, out_w = h // self.encoder_stride, w // self.encoder_stride
        seq_l = out_h * out_w
        mask = torch.zeros([1, 1, seq_l], device=x.device)
        # Python's RNG as upstream (a draw is consumed even when the range is 0)
        mask_ratio = mask_ratio + random.uniform(0.0, self.range_mask_ratio)
        noise = torch.rand(1, 1, seq_l, device=x.device)
        mask_idx = torch.argsort(noise, dim=2)[:, :, : int(seq_l * mask_ratio)]
        mask.scatter_(2, mask_idx, 1)
        mask = mask.reshape(1, 1, out_h, out_w)
        scaled = [
            F.interpolate(mask, size=(out_h * f, out_w * f), mode="nearest") for f in (8, 4, 2)
        ]
        return (*(m.reshape(1, -1, 1).contiguous() for m in scaled), mask.reshape(1, -1, 1))

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: bool | None = True
    ) -> tuple[torch.Tensor, ...]:
        if mask is None or mask is False:
            return super().forward(x)
        return self._mixed_forward(x, self.mask_ratio)

    def _mixed_forward(
        self, x: torch.Tensor, mask_ratio: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        masks = self.random_masking(x, mask_ratio)
        x, _ = self.patch_embed(x)
        x = x * (1.0 - masks[0]) + x.flip(0) * masks[0]
        x = self.drop_after_pos(x + self.absolute_pos_embed)
        for layer, stage_mask in zip(self.layers, masks):
            x = layer(x, attn_mask=stage_mask)
        return self.norm(x), masks[-1]


@MODELS.register_module(name="MixMIMTransformerPretrain")
class SelfSupMixMIMTransformerPretrain(MixMIMPretrainTransformer):
    """MMSelfSup 1.x's ``MixMIMTransformerPretrain``: the same encoder and keys, without a
    ``mask_ratio`` argument; ``forward(x, mask_ratio=0.5)`` always mixes."""

    def __init__(
        self,
        arch: str | dict = "base",
        mlp_ratio: float = 4,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_channels: int = 3,
        window_size: Sequence[int] = (14, 14, 14, 7),
        qkv_bias: bool = True,
        patch_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        use_checkpoint: bool = False,
        range_mask_ratio: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch=arch,
            mlp_ratio=mlp_ratio,
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            window_size=window_size,
            qkv_bias=qkv_bias,
            patch_cfg=patch_cfg,
            norm_cfg=norm_cfg,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            attn_drop_rate=attn_drop_rate,
            use_checkpoint=use_checkpoint,
            mask_ratio=0.5,
            range_mask_ratio=range_mask_ratio,
            init_cfg=init_cfg,
        )

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask_ratio: float = 0.5
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._mixed_forward(x, mask_ratio)


@MODELS.register_module()
class MixMIMPretrainDecoder(MAEPretrainDecoder):
    """MixMIM's decoder: MAE's layers, a position embedding without a class-token row
    and a ``encoder_stride**2 * 3`` pixel prediction per token.

    ``forward(x, mask)`` returns ``(2B, L, encoder_stride**2 * 3)``: the first half
    predicts the images whose visible tokens were kept (mask tokens where ``mask`` is 1),
    the second half the mirrored images (mask tokens where it is 0).
    """

    def __init__(
        self,
        num_patches: int = 196,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        encoder_stride: int = 32,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: int = 4,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            num_patches=num_patches,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            mlp_ratio=mlp_ratio,
            norm_cfg=dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg,
            init_cfg=init_cfg,
        )
        self.encoder_stride = encoder_stride
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches, decoder_embed_dim), requires_grad=False
        )
        self.decoder_pred = nn.Linear(decoder_embed_dim, encoder_stride**2 * 3)

    def init_weights(self) -> None:
        if self.is_init:
            return
        super(MAEPretrainDecoder, self).init_weights()
        pos = build_2d_sincos_position_embedding(
            int(self.num_patches**0.5), self.decoder_pos_embed.shape[-1], cls_token=False
        )
        self.decoder_pos_embed.data.copy_(pos.float())
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = self.decoder_embed(x)
        batch, length, _ = x.shape
        if length != self.num_patches:
            raise ValueError(
                f"MixMIMPretrainDecoder(num_patches={self.num_patches}) got {length} tokens: "
                "set num_patches to (img_size // encoder_stride) ** 2"
            )
        tokens = self.mask_token.expand(batch, length, -1)
        first = x * (1 - mask) + tokens * mask
        second = x * mask + tokens * (1 - mask)
        x = torch.cat([first, second], dim=0) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))


@MODELS.register_module()
class MixMIMPretrainHead(MAEPretrainHead):
    """MixMIM's head: un-mixes the decoder's two halves (each image's visible tokens
    from the first half, its masked ones from the mirrored second half) and applies
    ``loss`` against the (optionally per-patch standardised, ``norm_pix``) target patches.
    ``patch_size`` is set by :class:`MixMIM` to the decoder's ``encoder_stride``."""

    def __init__(
        self, loss: dict | nn.Module, norm_pix: bool = False, patch_size: int = 16
    ) -> None:
        super().__init__(loss=loss, norm_pix=norm_pix, patch_size=patch_size)

    def loss(self, x_rec: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        target = self.construct_target(target)
        half = x_rec.shape[0] // 2
        unmixed = x_rec[:half] * mask + x_rec[half:].flip(0) * (1 - mask)
        return self.loss_module(unmixed, target)


@MODELS.register_module()
class MixMIM(BaseSelfSupervisor):
    """MixMIM: ``backbone`` (:class:`MixMIMPretrainTransformer`), ``neck``
    (:class:`MixMIMPretrainDecoder`), ``head`` (:class:`MixMIMPretrainHead`, whose
    ``patch_size`` is taken from the neck's ``encoder_stride``).

    ``mode='loss'`` gives ``{'loss': ...}``; ``mode='tensor'`` the backbone's pooled
    features of the unmixed image. MMSelfSup's list of one view is accepted as well.
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        neck: dict | nn.Module | None = None,
        head: dict | nn.Module | None = None,
        pretrained: str | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if not isinstance(neck, (dict, nn.Module)) or not isinstance(head, (dict, nn.Module)):
            raise ValueError("MixMIM needs a neck (MixMIMPretrainDecoder) and a head config")
        if isinstance(head, dict):
            stride = neck["encoder_stride"] if isinstance(neck, dict) else neck.encoder_stride
            head = {**head, "patch_size": stride}
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )

    def extract_feat(self, inputs: torch.Tensor | list[torch.Tensor]) -> Any:
        # the plain (unmixed) forward, whichever package's encoder this is
        return MixMIMTransformer.forward(self.backbone, _one_view(inputs))

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        inputs = _one_view(inputs)
        latent, mask = self.backbone(inputs)
        x_rec = self.neck(latent, mask)
        return {"loss": self.head.loss(x_rec, inputs, mask)}


def _one_view(inputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 1:
            raise ValueError(f"MixMIM takes one view of each image, got {len(inputs)} views")
        return inputs[0]
    return inputs
