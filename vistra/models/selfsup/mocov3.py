"""MoCo v3: a siamese contrastive method whose negatives are the rest of the global batch.

Chen, Xie and He, "An Empirical Study of Training Self-Supervised Vision Transformers"
(2021). Two views of each image go through the online encoder (backbone -> projector ->
the head's predictor) and through a momentum copy of backbone and projector
(``momentum_encoder``, a :class:`~vistra.models.selfsup.momentum.CosineEMA` whose
momentum is cosine-annealed over the run). Each L2-normalised prediction must pick the
momentum projection of the *other* view of its own image among those of every image of
the global batch; the symmetric InfoNCE (``loss(q1, k2) + loss(q2, k1)``), scaled by
``2 * temperature`` in the configs, is the loss.

:class:`MoCoV3ViT` is the ViT used for it: a fixed 2-D sine-cosine position embedding
(not trained) and, with ``stop_grad_conv1``, a frozen random patch projection, which the
paper found to stabilise training.

Key layout (both packages): ``backbone.*``, ``neck.*``, ``head.predictor.*``,
``momentum_encoder.steps``, ``momentum_encoder.module.0.*`` (backbone copy),
``momentum_encoder.module.1.*`` (projector copy). MMPretrain's ``base_momentum`` is the
online network's weight per update (0.01); MMSelfSup's the momentum encoder's (0.99); the
scoped ``mmselfsup`` variants convert. MMSelfSup's ViT returns MMCls 1.0rc's
``[patch map, class token]`` per output, which its ``NonLinearNeck(vit_backbone=True)``
and the benchmark heads read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from vistra.data.structures import DataSample
from vistra.models.backbones.vision_transformer import VisionTransformer, _arch
from vistra.models.base import BaseModule
from vistra.models.layers.pos_embed import build_2d_sincos_position_embedding, to_2tuple
from vistra.models.selfsup import nonlinear_neck  # noqa: F401 (registers the projector)
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.moco import concat_all_gather
from vistra.models.selfsup.momentum import CosineEMA
from vistra.registry import MODELS

MOCOV3_ARCHS = {
    **dict.fromkeys(["mocov3-s", "mocov3-small"], _arch(384, 12, 12, 1536)),
}


def _has_pretrained(init_cfg: dict | list[dict] | None) -> bool:
    # upstream only looks at a single dict here (a list never counts as pretrained)
    return isinstance(init_cfg, dict) and init_cfg.get("type") == "Pretrained"


def online_weight(owner: str, base_momentum: float, of_target: bool) -> float:
    """The online network's weight per update; ``of_target``: MMSelfSup's value (the
    momentum encoder's weight) is converted."""
    value = 1.0 - base_momentum if of_target else base_momentum
    if not 0.0 < value < 1.0:
        meaning = "the momentum encoder's" if of_target else "the online network's"
        raise ValueError(
            f"{owner} base_momentum is {meaning} weight per update and must lie strictly "
            f"between 0 and 1, got {base_momentum!r}"
        )
    return value


def two_views(owner: str, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
        got = f"{len(inputs)} view(s)" if isinstance(inputs, (list, tuple)) else "one tensor"
        raise ValueError(
            f"{owner} takes 2 views per image, got {got}: the train pipeline needs "
            "dict(type='MultiView', num_views=2, transforms=[view_pipeline]) before packing"
        )
    return inputs[0], inputs[1]


# --------------------------------------------------------------------------- backbone
@MODELS.register_module()
class MoCoV3ViT(VisionTransformer):
    """ViT for MoCo v3 (MMPretrain's arguments); every ``VisionTransformer`` argument too.

    ``stop_grad_conv1`` freezes the patch projection; ``frozen_stages >= 0`` freezes the
    embeddings, ``n > 0`` also the first ``n`` layers; ``norm_eval`` keeps BatchNorm
    layers (none in a plain ViT) in eval mode. ``init_weights`` writes the fixed sin-cos
    position embedding, xavier-uniform weights (Q, K and V of ``qkv`` each as its own
    matrix) and a tiny class token, unless ``init_cfg`` is a ``Pretrained`` dict.
    """

    arch_zoo = {**VisionTransformer.arch_zoo, **MOCOV3_ARCHS}

    def __init__(
        self,
        stop_grad_conv1: bool = False,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        init_cfg: dict | list[dict] | None = None,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        out_type: str = "cls_token",
        with_cls_token: bool = True,
        interpolate_mode: str = "bicubic",
        layer_scale_init_value: float = 0.0,
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        pre_norm: bool = False,
        avg_token: bool | None = None,
        output_cls_token: bool | None = None,
    ) -> None:
        super().__init__(
            arch=arch, img_size=img_size, patch_size=patch_size, in_channels=in_channels,
            out_indices=out_indices, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias, norm_cfg=norm_cfg, final_norm=final_norm, out_type=out_type,
            with_cls_token=with_cls_token, frozen_stages=-1,
            interpolate_mode=interpolate_mode, layer_scale_init_value=layer_scale_init_value,
            patch_cfg=patch_cfg, layer_cfgs=layer_cfgs, pre_norm=pre_norm,
            avg_token=avg_token, output_cls_token=output_cls_token, init_cfg=init_cfg,
        )  # fmt: skip
        self.patch_size = patch_size
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if stop_grad_conv1:
            self.patch_embed.projection.weight.requires_grad = False
            if self.patch_embed.projection.bias is not None:
                self.patch_embed.projection.bias.requires_grad = False
        self._freeze_stages()

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        if _has_pretrained(self.init_cfg):
            return
        # the position embedding is fixed, not learnt: sin-cos of the patch coordinates
        pos_embed = build_2d_sincos_position_embedding(
            self.patch_resolution, self.embed_dims, cls_token=True
        )
        self.pos_embed.data.copy_(pos_embed)
        self.pos_embed.requires_grad = False
        projection = self.patch_embed.projection
        fan = 3 * math.prod(to_2tuple(self.patch_size)) + self.embed_dims
        bound = math.sqrt(6.0 / float(fan))
        nn.init.uniform_(projection.weight, -bound, bound)
        if projection.bias is not None:
            nn.init.zeros_(projection.bias)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if "qkv" in name:
                    # Q, K and V are three matrices stacked: bound each by its own fan
                    fans = module.weight.shape[0] // 3 + module.weight.shape[1]
                    bound = math.sqrt(6.0 / float(fans))
                    nn.init.uniform_(module.weight, -bound, bound)
                else:
                    nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.cls_token, std=1e-6)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            for param in self.patch_embed.parameters():
                param.requires_grad = False
            self.cls_token.requires_grad = False
            self.pos_embed.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            layer = self.layers[i - 1]
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False
            if i == self.num_layers and self.final_norm:
                for param in self.ln1.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> MoCoV3ViT:
        nn.Module.train(self, mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


@MODELS.register_module(name="MoCoV3ViT", scope="mmselfsup")
class SelfSupMoCoV3ViT(MoCoV3ViT):
    """MMSelfSup's MoCo v3 ViT, built on MMCls 1.0rc's ViT: ``avg_token`` (mean patch
    token through ``ln2``) and ``output_cls_token`` (default True) instead of
    ``out_type``; with ``output_cls_token`` each output is ``[patch part, class token]``.
    """

    def __init__(
        self,
        stop_grad_conv1: bool = False,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        init_cfg: dict | list[dict] | None = None,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        with_cls_token: bool = True,
        avg_token: bool = False,
        output_cls_token: bool = True,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        pre_norm: bool = False,
    ) -> None:
        if output_cls_token and not with_cls_token:
            raise ValueError("MoCoV3ViT: output_cls_token=True needs with_cls_token=True")
        super().__init__(
            stop_grad_conv1, frozen_stages, norm_eval, init_cfg, arch, img_size, patch_size,
            in_channels, out_indices, drop_rate, drop_path_rate, qkv_bias, norm_cfg,
            final_norm, out_type="avg_featmap" if avg_token else "featmap",
            with_cls_token=with_cls_token, interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg, layer_cfgs=layer_cfgs, pre_norm=pre_norm,
        )  # fmt: skip
        self.output_cls_token = output_cls_token

    def _format_output(self, x: torch.Tensor, hw: tuple[int, int]) -> Any:
        patch = super()._format_output(x, hw)
        return [patch, x[:, 0]] if self.output_cls_token else patch


# --------------------------------------------------------------------------- head
def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@MODELS.register_module()
class MoCoV3Head(BaseModule):
    """The predictor and InfoNCE of MoCo v3 (both packages; key ``predictor.*``).

    The targets of every rank are gathered; the positive of prediction ``i`` on rank
    ``r`` is target ``i + r * N`` of the gathered batch.
    """

    def __init__(self, predictor: dict, loss: dict, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"MoCoV3Head temperature must be positive, got {temperature!r}")
        self.predictor = MODELS.build(predictor, key_path="model.head.predictor")
        self.loss_module = MODELS.build(loss, key_path="model.head.loss")
        self.temperature = temperature

    def loss(self, base_out: torch.Tensor, momentum_out: torch.Tensor) -> torch.Tensor:
        """InfoNCE of ``(N, C)`` online projections against ``(N, C)`` momentum ones."""
        pred = F.normalize(self.predictor([base_out])[0], dim=1)
        target = concat_all_gather(F.normalize(momentum_out, dim=1))
        logits = pred @ target.t() / self.temperature
        batch = logits.shape[0]
        labels = (torch.arange(batch, dtype=torch.long) + batch * _rank()).to(logits.device)
        return self.loss_module(logits, labels)

    def forward(self, base_out: torch.Tensor, momentum_out: torch.Tensor) -> torch.Tensor:
        return self.loss(base_out, momentum_out)


# --------------------------------------------------------------------------- model
@MODELS.register_module()
class MoCoV3(BaseSelfSupervisor):
    """MoCo v3 with MMPretrain's arguments (``base_momentum``: the online weight, 0.01)."""

    # MMSelfSup's variant reads ``base_momentum`` as the momentum encoder's weight
    _target_momentum = False

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        base_momentum: float = 0.01,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
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
        weight = online_weight(type(self).__name__, base_momentum, self._target_momentum)
        self.momentum_encoder = CosineEMA(nn.Sequential(self.backbone, self.neck), weight)

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        """Backbone features of a batch, or of the first view when given a list of views."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(
        self, inputs: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
    ) -> dict[str, torch.Tensor]:
        """Symmetric InfoNCE: each view's prediction against the other view's key."""
        view_1, view_2 = two_views(type(self).__name__, inputs)
        q1 = self.neck(self.backbone(view_1))[0]
        q2 = self.neck(self.backbone(view_2))[0]
        with torch.no_grad():
            self.momentum_encoder.update_parameters(nn.Sequential(self.backbone, self.neck))
            k1 = self.momentum_encoder(view_1)[0]
            k2 = self.momentum_encoder(view_2)[0]
        return dict(loss=self.head.loss(q1, k2) + self.head.loss(q2, k1))


@MODELS.register_module(name="MoCoV3", scope="mmselfsup")
class SelfSupMoCoV3(MoCoV3):
    """MoCo v3 with MMSelfSup 1.x's arguments: ``base_momentum`` is the momentum
    encoder's weight (0.99, i.e. an online weight of 0.01, annealed to 0)."""

    _target_momentum = True

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        base_momentum: float = 0.99,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone, neck, head, base_momentum, pretrained, data_preprocessor, init_cfg
        )
