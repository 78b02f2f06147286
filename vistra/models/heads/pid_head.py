"""``PIDHead`` (`PIDNet <https://arxiv.org/abs/2206.02066>`_), MMSegmentation 1.x.

Keys: ``i_head``/``p_head``/``d_head`` (``BasePIDHead``: ``conv.bn`` then ``conv.conv``, a
pre-activation ConvModule, then ``norm``), ``conv_seg`` (integral branch), ``p_cls_seg``
(proportional branch), ``d_cls_seg`` (one boundary channel).

In training the backbone gives ``(x_p, x_i, x_d)`` and the head returns the three logit
maps; at inference it gets ``x_i`` alone and returns its class logits. The losses
(``loss_decode``, four of them in this order) are: P-branch semantic loss (takes
``ignore_index``), I-branch semantic loss, boundary loss, and the I-branch loss on
pixels the boundary branch marks (sigmoid > 0.8). Training needs ``gt_edge_map`` in the
data samples (the ``GenerateEdge`` transform).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule, build_activation_layer, build_norm_layer
from vistra.models.utils.seg_utils import accuracy, resize
from vistra.registry import MODELS


class BasePIDHead(nn.Module):
    """Norm -> act -> 3x3 conv, then norm -> act, then (optionally) a classifier."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
    ) -> None:
        super().__init__()
        self.conv = ConvModule(
            in_channels, channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg,
            order=("norm", "act", "conv"),
        )  # fmt: skip
        self.norm = build_norm_layer(norm_cfg, channels)[1]
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor, cls_seg: nn.Module | None) -> torch.Tensor:
        x = self.act(self.norm(self.conv(x)))
        return cls_seg(x) if cls_seg is not None else x


@MODELS.register_module()
class PIDHead(BaseDecodeHead):
    """Heads over PIDNet's three branches (see the module docstring)."""

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
            in_channels, channels, num_classes=num_classes, norm_cfg=norm_cfg, act_cfg=act_cfg,
            **kwargs,
        )  # fmt: skip
        if not isinstance(self.loss_decode, nn.ModuleList) or len(self.loss_decode) != 4:
            raise ValueError(
                "PIDHead needs loss_decode to be a list of 4 losses (P-branch semantic, "
                "I-branch semantic, boundary, boundary-aware semantic)"
            )
        self.i_head = BasePIDHead(in_channels, channels, norm_cfg, act_cfg)
        self.p_head = BasePIDHead(in_channels // 2, channels, norm_cfg, act_cfg)
        # the boundary head keeps BasePIDHead's default activation, as upstream builds it
        self.d_head = BasePIDHead(in_channels // 2, in_channels // 4, norm_cfg)
        self.p_cls_seg = nn.Conv2d(channels, self.out_channels, kernel_size=1)
        self.d_cls_seg = nn.Conv2d(in_channels // 4, 1, kernel_size=1)

    def init_weights(self) -> None:
        """Kaiming-normal (fan_out) convs, unit BatchNorms: upstream's own scheme, which
        replaces the ``init_cfg`` of decode heads."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self._is_init = True

    def forward(
        self, inputs: torch.Tensor | Sequence[torch.Tensor]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.training:
            x_p, x_i, x_d = inputs
            return (
                self.p_head(x_p, self.p_cls_seg),
                self.i_head(x_i, self.cls_seg),
                self.d_head(x_d, self.d_cls_seg),
            )
        return self.i_head(inputs, self.cls_seg)

    def _stack_batch_gt(  # type: ignore[override]
        self, batch_data_samples: Sequence
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sem = super()._stack_batch_gt(batch_data_samples)
        missing = [i for i, s in enumerate(batch_data_samples) if "gt_edge_map" not in s]
        if missing:
            raise KeyError(
                f"data samples {missing} have no 'gt_edge_map'; PIDHead's boundary loss needs "
                "the GenerateEdge transform in the training pipeline (before PackSegInputs)"
            )
        edges = torch.stack([s.gt_edge_map.data for s in batch_data_samples], dim=0)
        return sem, edges

    def loss_by_feat(  # type: ignore[override]
        self, seg_logits: Sequence[torch.Tensor], batch_data_samples: Sequence
    ) -> dict[str, torch.Tensor]:
        p_logit, i_logit, d_logit = seg_logits
        sem_label, bd_label = self._stack_batch_gt(batch_data_samples)

        def up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return resize(x, like.shape[2:], mode="bilinear", align_corners=self.align_corners)

        p_logit, i_logit, d_logit = (
            up(p_logit, sem_label),
            up(i_logit, sem_label),
            up(d_logit, bd_label),
        )
        sem_label, bd_label = sem_label.squeeze(1), bd_label.squeeze(1)
        losses = self.loss_decode
        # pixels the boundary branch is confident about keep their label, others are ignored
        filler = torch.full_like(sem_label, self.ignore_index)
        sem_bd_label = torch.where(torch.sigmoid(d_logit[:, 0]) > 0.8, sem_label, filler)
        return {
            "loss_sem_p": losses[0](p_logit, sem_label, ignore_index=self.ignore_index),
            "loss_sem_i": losses[1](i_logit, sem_label),
            "loss_bd": losses[2](d_logit, bd_label),
            "loss_sem_bd": losses[3](i_logit, sem_bd_label),
            "acc_seg": accuracy(i_logit, sem_label, ignore_index=self.ignore_index),
        }
