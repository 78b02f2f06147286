"""``DDRHead`` (`DDRNet <https://arxiv.org/abs/2101.06085>`_), MMSegmentation 1.x.

A pre-activation 3x3 conv, norm and activation on DDRNet's output, then ``conv_seg``; in
training also an auxiliary copy on the spatial map after DDRNet's first exchange
(``aux_head``, ``aux_cls_seg``). ``loss_decode`` is a list of two losses: the first for
the main logits (``loss_context``), the second for the auxiliary ones (``loss_spatial``).

Keys: ``head.0.bn``/``head.0.conv`` (norm first), ``head.1`` (norm), the same under
``aux_head``, ``conv_seg``, ``aux_cls_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule, build_activation_layer, build_norm_layer
from vistra.models.utils.seg_utils import accuracy, resize
from vistra.registry import MODELS


@MODELS.register_module()
class DDRHead(BaseDecodeHead):
    """In training ``forward`` takes DDRNet's ``(spatial, output)`` pair and returns
    ``(logits, aux_logits)``; otherwise one map and its logits. ``in_channels`` is the
    output width; the auxiliary input is half as wide."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        **kwargs,
    ) -> None:
        super().__init__(
            in_channels,
            channels,
            num_classes=num_classes,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            **kwargs,
        )
        if not isinstance(self.loss_decode, nn.ModuleList) or len(self.loss_decode) != 2:
            raise ValueError(
                "DDRHead loss_decode must be a list of two losses (main, auxiliary), got "
                f"{kwargs.get('loss_decode', 'the default single loss')!r}"
            )
        self.head = self._make_base_head(self.in_channels, self.channels)
        self.aux_head = self._make_base_head(self.in_channels // 2, self.channels)
        self.aux_cls_seg = nn.Conv2d(self.channels, self.out_channels, kernel_size=1)

    def init_weights(self) -> None:
        # upstream replaces init_cfg with this: Kaiming (fan-out) for every conv, the
        # classifiers included, and unit BN
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self._is_init = True

    def _make_base_head(self, in_channels: int, channels: int) -> nn.Sequential:
        return nn.Sequential(
            ConvModule(
                in_channels,
                channels,
                3,
                padding=1,
                norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg,
                order=("norm", "act", "conv"),
            ),
            build_norm_layer(self.norm_cfg, channels)[1],
            build_activation_layer(self.act_cfg),
        )

    def forward(  # type: ignore[override]
        self, inputs: torch.Tensor | Sequence[torch.Tensor]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            c3_feat, c5_feat = inputs
            return self.cls_seg(self.head(c5_feat)), self.aux_cls_seg(self.aux_head(c3_feat))
        return self.cls_seg(self.head(inputs))

    def loss_by_feat(  # type: ignore[override]
        self,
        seg_logits: tuple[torch.Tensor, torch.Tensor],
        batch_data_samples: Sequence[DataSample],
    ) -> dict[str, torch.Tensor]:
        context_logit, spatial_logit = seg_logits
        seg_label = self._stack_batch_gt(batch_data_samples)
        size = seg_label.shape[2:]
        context_logit = resize(
            context_logit, size, mode="bilinear", align_corners=self.align_corners
        )
        spatial_logit = resize(
            spatial_logit, size, mode="bilinear", align_corners=self.align_corners
        )
        seg_label = seg_label.squeeze(1)
        # as upstream, the losses get no ignore_index: OhemCrossEntropy carries its own
        return {
            "loss_context": self.loss_decode[0](context_logit, seg_label),
            "loss_spatial": self.loss_decode[1](spatial_logit, seg_label),
            "acc_seg": accuracy(context_logit, seg_label, ignore_index=self.ignore_index),
        }
