"""SparK pre-training (`Designing BERT for Convolutional Networks: Sparse and Hierarchical
Masked Modeling <https://arxiv.org/abs/2301.03580>`_), MMPretrain-compatible.

One step: a random ``1 - mask_ratio`` of the ``f x f`` cells of the coarsest feature map
(``f = input_size // downsample_raito``) is kept per image (``torch.rand(B, f*f)`` on the
CPU, as upstream), the image is zeroed outside them, and a sparse CNN encoder
(:class:`SparseResNet` or :class:`SparseConvNeXt`: dense convolutions followed by
masking, as upstream emulates sparse convolution, see
:mod:`vistra.models.selfsup.sparse_layers`) returns four hierarchical feature maps. From
the coarsest to the finest, each map is normalised by a sparse norm, its masked positions
are filled with a learned mask token, and it is projected to the decoder's width; the
light U-Net-like decoder (:class:`SparKLightDecoder`) upsamples and sums them into an
image, and :class:`SparKPretrainHead` takes the (per-patch standardised) L2 loss on the
masked ``downsample_raito``-sized patches only.

State-dict keys are MMPretrain's: ``backbone.*`` (the dense ResNet/ConvNeXt names;
SparseConvNeXt has no output norms), ``enc_dec_norms.{i}``, ``enc_dec_projectors.{i}``,
``mask_tokens.{i}``, ``neck.decoder.{i}.{upsample,conv_blocks.0.{conv1,norm1,conv2,norm2}}``,
``neck.proj``; the head has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.utils.checkpoint as cp
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.convnext import ConvNeXt, ConvNeXtBlock
from vistra.models.backbones.resnet import _DEFAULT_INIT as _RESNET_INIT
from vistra.models.backbones.resnet import ResNet
from vistra.models.base import BaseModule
from vistra.models.layers import build_activation_layer, build_norm_layer
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.mae_head import patchify
from vistra.models.selfsup.sparse_layers import SparseHelper, dense_model_to_sparse
from vistra.registry import MODELS

__all__ = [
    "SparK",
    "SparKLightDecoder",
    "SparKPretrainHead",
    "SparseConvNeXt",
    "SparseConvNeXtBlock",
    "SparseResNet",
]

_CONVNEXT_INIT = [
    dict(type="TruncNormal", layer=["Conv2d", "Linear"], std=0.02, bias=0.0),
    dict(type="Constant", layer=["LayerNorm"], val=1.0, bias=0.0),
]
_DECODER_INIT = [
    dict(type="Kaiming", layer=["Conv2d", "ConvTranspose2d"]),
    dict(type="TruncNormal", std=0.02, layer=["Linear"]),
    dict(type="Constant", val=1, layer=["_BatchNorm", "LayerNorm", "SyncBatchNorm"]),
]


# ----------------------------------------------------------------------------- encoders
@MODELS.register_module()
class SparseResNet(ResNet):
    """MMPretrain's ResNet with every convolution, pooling and batch norm made sparse.

    ``norm_cfg`` names a sparse norm (``SparseSyncBatchNorm2d`` by default; a type with
    ``Sync`` in its name makes the converted batch norms synchronised)."""

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        stem_channels: int = 64,
        base_channels: int = 64,
        expansion: int | None = None,
        num_stages: int = 4,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (3,),
        style: str = "pytorch",
        deep_stem: bool = False,
        avg_down: bool = False,
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        norm_eval: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = False,
        init_cfg: dict | list[dict] | None = _RESNET_INIT,  # copied by BaseModule
        drop_path_rate: float = 0.0,
    ) -> None:
        norm_cfg = dict(type="SparseSyncBatchNorm2d") if norm_cfg is None else norm_cfg
        super().__init__(
            depth=depth,
            in_channels=in_channels,
            stem_channels=stem_channels,
            base_channels=base_channels,
            expansion=expansion,
            num_stages=num_stages,
            strides=strides,
            dilations=dilations,
            out_indices=out_indices,
            style=style,
            deep_stem=deep_stem,
            avg_down=avg_down,
            frozen_stages=frozen_stages,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            norm_eval=norm_eval,
            with_cp=with_cp,
            zero_init_residual=zero_init_residual,
            init_cfg=init_cfg,
            drop_path_rate=drop_path_rate,
        )
        norm_type = norm_cfg.get("type", "")
        sync = isinstance(norm_type, str) and "Sync" in norm_type
        dense_model_to_sparse(self, sync_bn=sync)


class SparseConvNeXtBlock(ConvNeXtBlock):
    """A ConvNeXt block whose residual branch is zeroed at masked positions."""

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.depthwise_conv(x)
        layout = "channel_last" if self.linear_pw_conv else "channel_first"
        if self.linear_pw_conv:
            x = x.permute(0, 2, 3, 1)
        x = self.norm(x, data_format=layout)
        x = self.act(self.pointwise_conv1(x))
        if self.grn is not None:
            x = self.grn(x, data_format=layout)
        x = self.pointwise_conv2(x)
        if self.linear_pw_conv:
            x = x.permute(0, 3, 1, 2)
        if self.gamma is not None:
            x = x.mul(self.gamma.view(1, -1, 1, 1))
        active = SparseHelper.active_map(x.shape[2])
        if active is not None:
            x = x * active
        return shortcut + self.drop_path(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


@MODELS.register_module()
class SparseConvNeXt(ConvNeXt):
    """MMPretrain's sparse ConvNeXt (v2 with ``use_grn=True, layer_scale_init_value=0``):
    ConvNeXt's stem, downsampling and blocks with sparse convolutions and norms, and no
    output norms. ``gap_before_output`` averages each output map to ``(N, C)``."""

    def __init__(
        self,
        arch: str | dict = "small",
        in_channels: int = 3,
        stem_patch_size: int = 4,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        linear_pw_conv: bool = True,
        use_grn: bool = False,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        out_indices: int | Sequence[int] = -1,
        frozen_stages: int = 0,
        gap_before_output: bool = True,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = _CONVNEXT_INIT,  # copied by BaseModule
    ) -> None:
        # built without output norms (no out_indices), which upstream's sparse model lacks
        super().__init__(
            arch=arch,
            in_channels=in_channels,
            stem_patch_size=stem_patch_size,
            norm_cfg=dict(type="SparseLN2d", eps=1e-6) if norm_cfg is None else norm_cfg,
            act_cfg=act_cfg,
            linear_pw_conv=linear_pw_conv,
            use_grn=use_grn,
            drop_path_rate=drop_path_rate,
            layer_scale_init_value=layer_scale_init_value,
            out_indices=(),
            frozen_stages=frozen_stages,
            gap_before_final_norm=gap_before_output,
            with_cp=with_cp,
            init_cfg=init_cfg,
        )
        self.out_indices = self._parse_out_indices(out_indices)
        self.gap_before_output = gap_before_output
        for stage in self.stages:
            for block in stage:
                block.__class__ = SparseConvNeXtBlock  # same state, masked residual
        dense_model_to_sparse(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(self.downsample_layers[i](x))
            if i in self.out_indices:
                outs.append(x.mean([-2, -1]) if self.gap_before_output else x)
        return tuple(outs)


# ----------------------------------------------------------------------------- decoder
class ConvBlock2x(BaseModule):
    """conv3x3 -> norm -> act -> conv3x3 -> norm (-> act with ``last_act``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        norm_cfg: dict,
        act_cfg: dict,
        last_act: bool,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, 1, 1, bias=False)
        self.norm1 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.activate1 = build_activation_layer(act_cfg)
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, out_channels)[1]
        self.activate2 = build_activation_layer(act_cfg) if last_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activate1(self.norm1(self.conv1(x)))
        return self.activate2(self.norm2(self.conv2(x)))


class DecoderConvModule(BaseModule):
    """A transposed-conv upsampling by ``scale_factor``, then ``num_conv_blocks`` blocks."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        kernel_size: int = 4,
        scale_factor: int = 2,
        num_conv_blocks: int = 1,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        last_act: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if kernel_size < scale_factor or (kernel_size - scale_factor) % 2:
            raise ValueError(
                f"kernel_size ({kernel_size}) must be >= scale_factor ({scale_factor}) and "
                "differ from it by an even number"
            )
        self.upsample = nn.ConvTranspose2d(
            in_channels,
            in_channels,
            kernel_size=kernel_size,
            stride=scale_factor,
            padding=(kernel_size - scale_factor) // 2,
            bias=True,
        )
        self.conv_blocks = nn.Sequential(
            *[
                ConvBlock2x(
                    in_channels=in_channels,
                    out_channels=out_channels,
                    mid_channels=mid_channels,
                    norm_cfg=dict(type="SyncBN") if norm_cfg is None else norm_cfg,
                    act_cfg=dict(type="ReLU6") if act_cfg is None else act_cfg,
                    last_act=last_act,
                )
                for _ in range(num_conv_blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_blocks(self.upsample(x))


@MODELS.register_module()
class SparKLightDecoder(BaseModule):
    """SparK's decoder: ``log2(upsample_ratio)`` upsampling modules halving the width
    from ``feature_dim``, each first adding the encoder map of its resolution, and a 1x1
    projection to RGB. ``mid_channels=0`` uses each module's input width."""

    def __init__(
        self,
        feature_dim: int,
        upsample_ratio: int,
        mid_channels: int = 0,
        kernel_size: int = 4,
        scale_factor: int = 2,
        num_conv_blocks: int = 1,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        last_act: bool = False,
        init_cfg: dict | list[dict] | None = _DECODER_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        if upsample_ratio <= 0 or upsample_ratio & (upsample_ratio - 1):
            raise ValueError(
                f"SparKLightDecoder upsample_ratio must be a power of 2, got {upsample_ratio}"
            )
        self.feature_dim = feature_dim
        n = round(math.log2(upsample_ratio))
        channels = [feature_dim // 2**i for i in range(n + 1)]
        self.decoder = nn.ModuleList(
            DecoderConvModule(
                in_channels=c_in,
                out_channels=c_out,
                mid_channels=c_in if mid_channels == 0 else mid_channels,
                kernel_size=kernel_size,
                scale_factor=scale_factor,
                num_conv_blocks=num_conv_blocks,
                norm_cfg=dict(type="SyncBN") if norm_cfg is None else norm_cfg,
                act_cfg=dict(type="ReLU6") if act_cfg is None else act_cfg,
                last_act=last_act,
            )
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.proj = nn.Conv2d(channels[-1], 3, kernel_size=1, stride=1, bias=True)

    def forward(self, to_dec: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """``to_dec``: the projected encoder maps from the coarsest (None: skip)."""
        x: Any = 0
        for i, module in enumerate(self.decoder):
            if i < len(to_dec) and to_dec[i] is not None:
                x = x + to_dec[i]
            x = module(x)
        return self.proj(x)


# ----------------------------------------------------------------------------- head
@MODELS.register_module()
class SparKPretrainHead(BaseModule):
    """``loss`` between the reconstruction's and the image's ``patch_size`` patches
    (standardised per patch with ``norm_pix``), over the masked patches only."""

    def __init__(self, loss: dict | nn.Module, norm_pix: bool = True, patch_size: int = 32) -> None:
        super().__init__()
        self.norm_pix = norm_pix
        self.patch_size = patch_size
        self.loss = (
            loss if isinstance(loss, nn.Module) else MODELS.build(loss, key_path="model.head.loss")
        )

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        if imgs.dim() != 4 or imgs.shape[2] % p or imgs.shape[3] % p:
            raise ValueError(
                f"SparKPretrainHead(patch_size={p}) got images of shape {tuple(imgs.shape)}"
            )
        return patchify(imgs, p)

    def construct_target(self, target: torch.Tensor) -> torch.Tensor:
        target = self.patchify(target)
        if self.norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, active_mask: torch.Tensor
    ) -> torch.Tensor:
        """``active_mask`` ``(B, 1, f, f)``: True on the cells the encoder saw."""
        target = self.construct_target(target)
        pred = self.patchify(pred)
        hidden = active_mask.logical_not().int().view(active_mask.shape[0], -1)
        return self.loss(pred, target, hidden)


# ----------------------------------------------------------------------------- algorithm
@MODELS.register_module()
class SparK(BaseSelfSupervisor):
    """SparK: a sparse CNN ``backbone`` (``out_indices`` of its four stages), the
    ``neck`` decoder and the ``head``. ``enc_dec_norm_dim`` is the width of the coarsest
    encoder map (halved for each finer one); ``downsample_raito`` (upstream's spelling) the
    encoder's total stride. ``mode='loss'`` gives ``{'loss': ...}``.
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        neck: dict | nn.Module,
        head: dict | nn.Module,
        pretrained: str | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        input_size: int = 224,
        downsample_raito: int = 32,
        mask_ratio: float = 0.6,
        enc_dec_norm_cfg: dict | None = None,
        enc_dec_norm_dim: int = 2048,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        if input_size % downsample_raito:
            raise ValueError(
                f"SparK input_size ({input_size}) must be a multiple of downsample_raito "
                f"({downsample_raito})"
            )
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"SparK mask_ratio must be in [0, 1), got {mask_ratio}")
        self.input_size = input_size
        self.downsample_raito = downsample_raito
        self.feature_map_size = input_size // downsample_raito
        self.mask_ratio = mask_ratio
        self.len_keep = round(self.feature_map_size**2 * (1 - mask_ratio))
        self.enc_dec_norm_cfg = (
            dict(type="SparseSyncBatchNorm2d") if enc_dec_norm_cfg is None else enc_dec_norm_cfg
        )
        self.enc_dec_norms = nn.ModuleList()
        self.enc_dec_projectors = nn.ModuleList()
        self.mask_tokens = nn.ParameterList()
        norm_dim, proj_dim = enc_dec_norm_dim, self.neck.feature_dim
        for i in range(len(self.backbone.out_indices)):
            self.enc_dec_norms.append(build_norm_layer(self.enc_dec_norm_cfg, norm_dim)[1])
            kernel = 1 if i == 0 else 3
            proj: nn.Module = nn.Conv2d(norm_dim, proj_dim, kernel, 1, kernel // 2, bias=True)
            if i == 0 and norm_dim == proj_dim:
                proj = nn.Identity()
            self.enc_dec_projectors.append(proj)
            token = nn.Parameter(torch.zeros(1, norm_dim, 1, 1))
            nn.init.trunc_normal_(token, mean=0.0, std=0.02, a=-0.02, b=0.02)
            self.mask_tokens.append(token)
            norm_dim //= 2
            proj_dim //= 2

    def mask(
        self,
        shape: torch.Size,
        device: torch.device | str,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(B, 1, f, f)`` boolean map with ``len_keep`` random True (visible) cells per
        image; the noise is drawn on the CPU as upstream, then moved to ``device``."""
        batch = shape[0]
        f = self.feature_map_size
        idx = torch.rand(batch, f * f, generator=generator).argsort(dim=1)
        idx = idx[:, : self.len_keep].to(device)
        mask = torch.zeros(batch, f * f, dtype=torch.bool, device=device)
        return mask.scatter_(dim=1, index=idx, value=True).view(batch, 1, f, f)

    def extract_feat(self, inputs: torch.Tensor | list[torch.Tensor]) -> Any:
        # features of the whole image: no active map, every layer dense
        SparseHelper._cur_active = None
        return self.backbone(_one_view(inputs))

    def loss(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        inputs = _one_view(inputs)
        if inputs.shape[-1] != self.input_size or inputs.shape[-2] != self.input_size:
            raise ValueError(
                f"SparK(input_size={self.input_size}) got images of shape "
                f"{tuple(inputs.shape)}; set input_size to the crop size"
            )
        active = self.mask(inputs.shape, inputs.device)
        # kept after the forward pass (as upstream) so that recomputation in the backward
        # pass (with_cp) sees the same mask
        SparseHelper._cur_active = active
        ratio = self.downsample_raito
        masked = inputs * active.repeat_interleave(ratio, 2).repeat_interleave(ratio, 3)
        feature_maps = list(self.backbone(masked))[::-1]  # coarsest first
        cur_active = active
        to_dec: list[torch.Tensor | None] = []
        for i, fmap in enumerate(feature_maps):
            if fmap is not None:
                fmap = self.enc_dec_norms[i](fmap)
                token = self.mask_tokens[i].expand_as(fmap).to(fmap.dtype)
                fmap = torch.where(cur_active.expand_as(fmap), fmap, token)
                fmap = self.enc_dec_projectors[i](fmap)
            to_dec.append(fmap)
            cur_active = cur_active.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        rec = self.neck(to_dec)
        return {"loss": self.head(rec, inputs, active)}


def _one_view(inputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 1:
            raise ValueError(f"SparK takes one view of each image, got {len(inputs)} views")
        return inputs[0]
    return inputs
