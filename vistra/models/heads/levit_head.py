"""``LeViTClsHead`` (MMPretrain): BatchNorm + linear classifiers on the pooled LeViT
features, ``head`` and, with ``distillation`` (the default, as the published weights),
``head_dist``, whose logits are averaged.

``switch_to_deploy()`` (or ``deploy=True``) folds each BatchNorm into its linear layer.
Keys: ``head.{bn,linear}``, ``head_dist.{bn,linear}``; deployed ``head.{weight,bias}``,
``head_dist.{weight,bias}``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.levit import fuse_parameters
from vistra.models.base import BaseModule
from vistra.models.heads.cls_head import ClsHead
from vistra.models.heads.efficientformer_head import DISTILLED_TRAINING_WARNING
from vistra.models.layers import build_norm_layer
from vistra.registry import MODELS


class BatchNormLinear(BaseModule):
    """``linear(bn(x))`` (keys ``bn``, ``linear``)."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict | None = None) -> None:
        super().__init__()
        norm_cfg = dict(type="BN1d") if norm_cfg is None else norm_cfg
        self.bn = build_norm_layer(norm_cfg, in_channels)[1]
        self.linear = nn.Linear(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(x))

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        """The linear layer with the (eval-mode) BN before it folded in."""
        bn, linear = self.bn, self.linear
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        shift = bn.bias - bn.running_mean * scale
        fused = nn.Linear(linear.in_features, linear.out_features).to(linear.weight)
        fused.weight.copy_(linear.weight * scale[None, :])
        fused.bias.copy_(linear.weight @ shift + linear.bias)
        return fused


@MODELS.register_module()
class LeViTClsHead(ClsHead):
    """``(head(x) + head_dist(x)) / 2`` of the last (pooled) backbone output, ``head(x)``
    alone without ``distillation``. Other keyword arguments (``loss``, ``topk``,
    ``cal_acc``, ``init_cfg``) go to :class:`ClsHead`.

    MMPretrain raises ``NotImplementedError`` when the distilled head runs in training
    mode (and cannot build ``deploy=True``); here the averaged logits are trained, with a
    warning, so that the published configs train as they are.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        distillation: bool = True,
        in_channels: int | None = None,
        deploy: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes <= 0:
            raise ValueError(f"num_classes={num_classes} must be a positive integer")
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f"LeViTClsHead needs in_channels, a positive int; got {in_channels!r}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.distillation = distillation
        self.head = BatchNormLinear(in_channels, num_classes)
        if distillation:
            self.head_dist = BatchNormLinear(in_channels, num_classes)
        self.deploy = False
        if deploy:
            self.switch_to_deploy()

    def switch_to_deploy(self) -> None:
        """Fold the BatchNorms into the classifiers (once)."""
        if self.deploy:
            return
        fuse_parameters(self)
        self.deploy = True

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = self.pre_logits(feats)
        if not self.distillation:
            return self.head(x)
        return (self.head(x) + self.head_dist(x)) / 2

    def loss(
        self, feats: tuple[torch.Tensor, ...], data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        if self.distillation:
            warnings.warn(DISTILLED_TRAINING_WARNING.format(name=type(self).__name__), stacklevel=2)
        return super().loss(feats, data_samples)
