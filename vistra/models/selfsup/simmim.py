"""SimMIM (Xie et al., 2021, `SimMIM: A Simple Framework for Masked Image Modeling
<https://arxiv.org/abs/2111.09886>`_), as MMPretrain's and MMSelfSup 1.x's ``SimMIM``.

Model-family file: the encoder ``SimMIMSwinTransformer``, the one-layer decoder
``SimMIMLinearDecoder`` (MMSelfSup's name: ``SimMIMNeck``), ``SimMIMHead`` and the
algorithm ``SimMIM``. One step: the Swin encoder replaces the patch embeddings of the
masked patches (the mask comes from the pipeline's ``SimMIMMaskGenerator``, one 0/1 entry
per 4x4 model patch) by a learned ``mask_token``; the last stage's map goes through a
1x1 conv to ``stride**2 * 3`` channels and a pixel shuffle back to image size; the loss
is the L1 distance on the masked pixels only.

Keys (both packages): the Swin backbone's (vistra/models/backbones/swin.py) plus
``backbone.mask_token``; ``neck.decoder.0`` (the 1x1 conv; ``decoder.1`` is the pixel
shuffle); nothing for the head. Not provided: MMSelfSup's visualisation helper
``SimMIM.reconstruct`` (and its ``extract_feat`` returning the masked reconstruction);
``extract_feat`` here gives the unmasked backbone features, as MMPretrain's does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.swin import SwinTransformer, loads_pretrained
from vistra.models.base import BaseModule
from vistra.models.layers.pos_embed import resize_pos_embed
from vistra.models.selfsup import reconstruction_losses  # noqa: F401 (registers the loss)
from vistra.models.selfsup.base import BaseSelfSupervisor, stacked_field
from vistra.registry import MODELS

__all__ = ["SimMIM", "SimMIMHead", "SimMIMLinearDecoder", "SimMIMSwinTransformer"]


def _trunc_normal_linear_init(module: nn.Module) -> None:
    """Upstream's SimMIM initialisation of every linear layer and layer norm."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@MODELS.register_module()
class SimMIMSwinTransformer(SwinTransformer):
    """Swin Transformer with a learned ``mask_token`` (MMPretrain's and MMSelfSup's).

    ``forward(x, mask)``: ``mask`` ``(B, H/4, W/4)`` (1 = hidden) puts ``mask_token`` in
    place of those patch embeddings and returns the ``out_indices`` maps of the stages,
    each taken after its stage's patch merging as upstream does (the last stage has none,
    so the configs' ``out_indices=(3,)`` is the usual map). ``mask=None`` is the plain
    Swin forward (features for probing). Arguments: upstream's (patch size 4, window 7
    unless ``stage_cfgs`` set ``block_cfgs.window_size``).
    """

    def __init__(
        self,
        arch: str | dict = "T",
        img_size: int | tuple[int, int] = 224,
        in_channels: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        out_indices: Sequence[int] = (3,),
        use_abs_pos_embed: bool = False,
        with_cp: bool = False,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        norm_cfg: dict | None = dict(type="LN"),  # noqa: B006 (never mutated)
        stage_cfgs: Sequence[dict] | dict | None = None,
        patch_cfg: dict | None = None,
        pad_small_map: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch=arch,
            img_size=img_size,
            in_channels=in_channels,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            out_indices=out_indices,
            use_abs_pos_embed=use_abs_pos_embed,
            with_cp=with_cp,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            norm_cfg=norm_cfg,
            stage_cfgs=stage_cfgs,
            patch_cfg=patch_cfg,
            pad_small_map=pad_small_map,
            init_cfg=init_cfg,
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def init_weights(self) -> None:
        """Upstream's: truncated-normal ``mask_token`` and linear layers, unit layer norms;
        skipped when the backbone loads a checkpoint."""
        was_init = self.is_init
        super().init_weights()
        if was_init or loads_pretrained(self.init_cfg):
            return
        nn.init.trunc_normal_(self.mask_token, mean=0.0, std=0.02)
        self.apply(_trunc_normal_linear_init)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        if mask is None:
            return super().forward(x)
        x, hw_shape = self.patch_embed(x)
        batch, length, _ = x.shape
        if mask[0].numel() != length:
            raise ValueError(
                f"SimMIMSwinTransformer: the mask has {mask[0].numel()} entries per image, "
                f"the patch grid {tuple(hw_shape)} has {length}; the mask generator's "
                "input_size / model_patch_size must give the encoder's patch grid"
            )
        mask_token = self.mask_token.expand(batch, length, -1)
        weight = mask.flatten(1).unsqueeze(-1).type_as(mask_token)
        x = x * (1.0 - weight) + mask_token * weight
        if self.use_abs_pos_embed:
            x = x + resize_pos_embed(
                self.absolute_pos_embed, self.patch_resolution, hw_shape,
                self.interpolate_mode, self.num_extra_tokens,
            )  # fmt: skip
        x = self.drop_after_pos(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, hw_shape = stage(x, hw_shape)  # merged: upstream reads after downsampling
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(x)
                outs.append(
                    out.view(-1, *hw_shape, stage.out_channels).permute(0, 3, 1, 2).contiguous()
                )
        return tuple(outs)


@MODELS.register_module(name=["SimMIMLinearDecoder", "SimMIMNeck"])
class SimMIMLinearDecoder(BaseModule):
    """A 1x1 conv to ``encoder_stride**2 * 3`` channels and a pixel shuffle: the
    ``(B, in_channels, H/s, W/s)`` map becomes a ``(B, 3, H, W)`` image (MMSelfSup 1.x
    calls it ``SimMIMNeck``; same arguments and keys)."""

    def __init__(self, in_channels: int, encoder_stride: int) -> None:
        super().__init__()
        self.decoder = nn.Sequential(
            nn.Conv2d(in_channels, encoder_stride**2 * 3, kernel_size=1),
            nn.PixelShuffle(encoder_stride),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(x)


@MODELS.register_module()
class SimMIMHead(BaseModule):
    """Expands the patch mask ``(B, h, w)`` by ``patch_size`` to a ``(B, 1, H, W)`` pixel
    mask and applies ``loss`` (``PixelReconstructionLoss`` or MMSelfSup's
    ``SimMIMReconstructionLoss``) to the reconstruction and the input image.
    MMPretrain calls ``head.loss(...)``, MMSelfSup ``head(...)``: the same computation."""

    def __init__(self, patch_size: int, loss: dict | nn.Module) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.loss_module = (
            loss if isinstance(loss, nn.Module) else MODELS.build(loss, key_path="model.head.loss")
        )

    def loss(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``pred``/``target`` ``(B, C, H, W)``; ``mask`` ``(B, H/p, W/p)``, 1 = hidden."""
        p = self.patch_size
        pixel_mask = mask.repeat_interleave(p, 1).repeat_interleave(p, 2).unsqueeze(1)
        return self.loss_module(pred, target, pixel_mask.contiguous())

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.loss(pred, target, mask)


@MODELS.register_module()
class SimMIM(BaseSelfSupervisor):
    """SimMIM: ``backbone`` (:class:`SimMIMSwinTransformer`), ``neck``
    (:class:`SimMIMLinearDecoder`) and ``head`` (:class:`SimMIMHead`). The data samples
    carry the mask (``PackInputs(algorithm_keys=['mask'])`` or ``PackSelfSupInputs``).

    ``mode='loss'`` gives ``{'loss': ...}``; ``mode='tensor'`` the backbone's features
    of the unmasked image. No random numbers are drawn in the model: the mask is the
    pipeline's.
    """

    def extract_feat(self, inputs: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return self.backbone(_one_view(inputs), mask=None)

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        img = _one_view(inputs)
        mask = stacked_field(data_samples or [], "mask").to(img.device)
        latent = self.backbone(img, mask)
        reconstruction = self.neck(latent[0])
        return {"loss": self.head.loss(reconstruction, img, mask)}


def _one_view(inputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Masked image modelling takes one view: MMSelfSup packs it in a one-element list."""
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 1:
            raise ValueError(
                f"masked image modelling takes one view of each image, got {len(inputs)}; "
                "remove MultiView from the pipeline"
            )
        return inputs[0]
    return inputs
