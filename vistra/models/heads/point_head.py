"""``PointHead`` (`PointRend <https://arxiv.org/abs/1912.08193>`_), MMSegmentation 1.x.

PointRend's second stage: at chosen points, fine features (bilinearly sampled from the
feature maps) and the coarse logits of the previous stage go through a shared MLP
(1x1 ``Conv1d``s). Training picks uncertain points among random ones; testing upsamples
the coarse logits ``subdivision_steps`` times and re-predicts the most uncertain cells.
Point sampling is plain ``F.grid_sample`` (no compiled MMCV ops).

Keys: ``fcs.{i}.conv``, ``fc_seg`` (there is no ``conv_seg``). Losses: ``pointloss_ce``
(``'point'`` + each loss name) and ``acc_point``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.heads.decode_head import BaseCascadeDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import (
    accuracy,
    calculate_uncertainty,
    cfg_value,
    point_sample,
    resize,
    sample_points_test,
    sample_points_train,
)
from vistra.registry import MODELS


@MODELS.register_module()
class PointHead(BaseCascadeDecodeHead):
    """``num_fcs`` point-wise layers of ``channels`` units on ``[fine, coarse]`` features;
    with ``coarse_pred_each_layer`` the coarse logits are appended after every layer.

    ``train_cfg`` keys: ``num_points``, ``oversample_ratio``, ``importance_sample_ratio``;
    ``test_cfg`` keys: ``subdivision_steps``, ``subdivision_num_points``, ``scale_factor``.
    """

    def __init__(
        self,
        num_fcs: int = 3,
        coarse_pred_each_layer: bool = True,
        conv_cfg: dict | None = dict(type="Conv1d"),  # noqa: B006 (never mutated)
        norm_cfg: dict | None = None,
        act_cfg: dict | None = dict(type="ReLU", inplace=False),  # noqa: B006 (never mutated)
        **kwargs,
    ) -> None:
        super().__init__(
            input_transform="multiple_select", conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            act_cfg=act_cfg, init_cfg=dict(type="Normal", std=0.01, override=dict(name="fc_seg")),
            **kwargs,
        )  # fmt: skip
        self.num_fcs, self.coarse_pred_each_layer = num_fcs, coarse_pred_each_layer
        fc_in = sum(self.in_channels) + self.num_classes
        self.fcs = nn.ModuleList()
        for _ in range(num_fcs):
            self.fcs.append(
                ConvModule(
                    fc_in, self.channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg
                )
            )
            fc_in = self.channels + (self.num_classes if coarse_pred_each_layer else 0)
        self.fc_seg = nn.Conv1d(fc_in, self.num_classes, kernel_size=1)
        if self.dropout_ratio > 0:
            self.dropout = nn.Dropout(self.dropout_ratio)
        del self.conv_seg

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.fc_seg(feat)

    def forward(  # type: ignore[override]
        self, fine_grained_point_feats: torch.Tensor, coarse_point_feats: torch.Tensor
    ) -> torch.Tensor:
        """Point logits ``(N, num_classes, P)`` from ``(N, C_fine, P)`` and ``(N, K, P)``."""
        x = torch.cat([fine_grained_point_feats, coarse_point_feats], dim=1)
        for fc in self.fcs:
            x = fc(x)
            if self.coarse_pred_each_layer:
                x = torch.cat((x, coarse_point_feats), dim=1)
        return self.cls_seg(x)

    def _get_fine_grained_point_feats(
        self, x: Sequence[torch.Tensor], points: torch.Tensor
    ) -> torch.Tensor:
        """Features of every selected map at ``points``, concatenated over channels."""
        feats = [point_sample(f, points, align_corners=self.align_corners) for f in x]
        return torch.cat(feats, dim=1) if len(feats) > 1 else feats[0]

    def _get_coarse_point_feats(
        self, prev_output: torch.Tensor, points: torch.Tensor
    ) -> torch.Tensor:
        return point_sample(prev_output, points, align_corners=self.align_corners)

    # ------------------------------------------------------------------ points
    def get_points_train(
        self,
        seg_logits: torch.Tensor,
        uncertainty_func: Callable[[torch.Tensor], torch.Tensor],
        cfg: dict | None,
    ) -> torch.Tensor:
        """Training points ``(N, num_points, 2)`` in ``[0, 1]`` chosen by uncertainty."""
        where = "model.train_cfg (PointHead)"
        return sample_points_train(
            seg_logits,
            num_points=cfg_value(cfg, "num_points", where=where),
            oversample_ratio=cfg_value(cfg, "oversample_ratio", where=where),
            importance_sample_ratio=cfg_value(cfg, "importance_sample_ratio", where=where),
            uncertainty_func=uncertainty_func,
        )

    def get_points_test(
        self,
        seg_logits: torch.Tensor,
        uncertainty_func: Callable[[torch.Tensor], torch.Tensor],
        cfg: dict | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices ``(N, P)`` and centres ``(N, P, 2)`` of the most uncertain cells."""
        num = cfg_value(cfg, "subdivision_num_points", where="model.test_cfg (PointHead)")
        return sample_points_test(seg_logits, num, uncertainty_func)

    # ------------------------------------------------------------------ train / test
    def loss(  # type: ignore[override]
        self,
        inputs: Sequence[torch.Tensor],
        prev_output: torch.Tensor,
        batch_data_samples: Sequence[DataSample],
        train_cfg: dict | None,
    ) -> dict[str, torch.Tensor]:
        x = self._transform_inputs(inputs)
        with torch.no_grad():
            points = self.get_points_train(prev_output, calculate_uncertainty, train_cfg)
        point_logits = self.forward(
            self._get_fine_grained_point_feats(x, points),
            self._get_coarse_point_feats(prev_output, points),
        )
        return self.loss_by_feat(point_logits, points, batch_data_samples)

    def loss_by_feat(  # type: ignore[override]
        self,
        point_logits: torch.Tensor,
        points: torch.Tensor,
        batch_data_samples: Sequence[DataSample],
    ) -> dict[str, torch.Tensor]:
        """Losses of the point logits against the labels at the points (nearest)."""
        gt = self._stack_batch_gt(batch_data_samples).float()
        point_label = point_sample(gt, points, mode="nearest", align_corners=self.align_corners)
        point_label = point_label.squeeze(1).long()
        losses: dict[str, torch.Tensor] = {}
        for loss_module in self._loss_modules():
            losses["point" + loss_module.loss_name] = loss_module(
                point_logits, point_label, ignore_index=self.ignore_index
            )
        losses["acc_point"] = accuracy(point_logits, point_label, ignore_index=self.ignore_index)
        return losses

    def predict(  # type: ignore[override]
        self,
        inputs: Sequence[torch.Tensor],
        prev_output: torch.Tensor,
        batch_img_metas: list[dict],
        test_cfg: dict | None,
    ) -> torch.Tensor:
        return self.predict_by_feat(
            self.forward_tensor(inputs, prev_output, test_cfg), batch_img_metas
        )

    def forward_tensor(
        self, inputs: Sequence[torch.Tensor], prev_output: torch.Tensor, test_cfg: dict | None
    ) -> torch.Tensor:
        """The coarse logits refined by subdivision: upsample by ``scale_factor``, then
        replace the most uncertain cells with point predictions; ``subdivision_steps`` times."""
        where = "model.test_cfg (PointHead)"
        steps = cfg_value(test_cfg, "subdivision_steps", where=where)
        scale_factor = cfg_value(test_cfg, "scale_factor", where=where)
        x = self._transform_inputs(inputs)
        refined = prev_output.clone()
        for _ in range(steps):
            refined = resize(
                refined,
                scale_factor=scale_factor,
                mode="bilinear",
                align_corners=self.align_corners,
            )
            batch_size, channels, height, width = refined.shape
            point_indices, points = self.get_points_test(refined, calculate_uncertainty, test_cfg)
            point_logits = self.forward(
                self._get_fine_grained_point_feats(x, points),
                self._get_coarse_point_feats(prev_output, points),
            )
            index = point_indices.unsqueeze(1).expand(-1, channels, -1)
            refined = refined.reshape(batch_size, channels, height * width)
            refined = refined.scatter(2, index, point_logits.to(refined.dtype))
            refined = refined.view(batch_size, channels, height, width)
        return refined
