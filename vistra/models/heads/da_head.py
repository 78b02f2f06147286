"""``DAHead`` (`DANet <https://arxiv.org/abs/1809.02983>`_), MMSegmentation 1.x.

A position attention branch (PAM, a ``SelfAttentionBlock`` over the pixels) and a channel
attention branch (CAM), each classified on its own (``pam_conv_seg``, ``cam_conv_seg``) and,
summed, by ``conv_seg``. ``forward`` returns the three logits ``(pam_cam, pam, cam)``;
``predict`` uses ``pam_cam`` only; the losses are prefixed ``pam_cam.``, ``pam.``, ``cam.``.

Keys: ``pam_in_conv``, ``pam.{key_project,query_project,value_project}`` (plain convs),
``pam.gamma.scale``, ``pam_out_conv``, ``pam_conv_seg``, ``cam_in_conv``,
``cam.gamma.scale``, ``cam_out_conv``, ``cam_conv_seg``, ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.layers.cc_attention import Scale
from vistra.models.layers.self_attention_block import SelfAttentionBlock
from vistra.models.utils.seg_utils import add_prefix
from vistra.registry import MODELS


class PAM(SelfAttentionBlock):
    """Position attention: plain-conv key/query (``channels``) and value (``in_channels``)
    projections, no output projection; ``gamma * attended + x``, ``gamma`` starting at 0."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__(
            key_in_channels=in_channels,
            query_in_channels=in_channels,
            channels=channels,
            out_channels=in_channels,
            share_key_query=False,
            query_downsample=None,
            key_downsample=None,
            key_query_num_convs=1,
            value_out_num_convs=1,
            key_query_norm=False,
            value_out_norm=False,
            matmul_norm=False,
            with_out=False,
            conv_cfg=None,
            norm_cfg=None,
            act_cfg=None,
        )
        self.gamma = Scale(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.gamma(super().forward(x, x)) + x


class CAM(nn.Module):
    """Channel attention: a softmax over ``max(energy) - energy`` of the channel Gram
    matrix; ``gamma * attended + x``, ``gamma`` starting at 0."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = Scale(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        flat = x.view(n, c, -1)
        energy = torch.bmm(flat, flat.permute(0, 2, 1))
        energy = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        out = torch.bmm(F.softmax(energy, dim=-1), flat).view(n, c, h, w)
        return self.gamma(out) + x


@MODELS.register_module()
class DAHead(BaseDecodeHead):
    """``pam_channels``: the key/query channels of the position attention."""

    def __init__(self, pam_channels: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pam_channels = pam_channels
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

        def conv3x3(cin: int) -> ConvModule:
            return ConvModule(cin, self.channels, 3, padding=1, **common)

        self.pam_in_conv = conv3x3(self.in_channels)
        self.pam = PAM(self.channels, pam_channels)
        self.pam_out_conv = conv3x3(self.channels)
        # MMSegmentation sizes the branch classifiers by num_classes (not out_channels)
        self.pam_conv_seg = nn.Conv2d(self.channels, self.num_classes, kernel_size=1)
        self.cam_in_conv = conv3x3(self.in_channels)
        self.cam = CAM()
        self.cam_out_conv = conv3x3(self.channels)
        self.cam_conv_seg = nn.Conv2d(self.channels, self.num_classes, kernel_size=1)

    def pam_cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        """Classify the PAM branch (shared dropout, then ``pam_conv_seg``)."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.pam_conv_seg(feat)

    def cam_cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        """Classify the CAM branch (shared dropout, then ``cam_conv_seg``)."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.cam_conv_seg(feat)

    def forward(  # type: ignore[override]
        self, inputs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self._transform_inputs(inputs)
        pam_feat = self.pam_out_conv(self.pam(self.pam_in_conv(x)))
        cam_feat = self.cam_out_conv(self.cam(self.cam_in_conv(x)))
        pam_cam_out = self.cls_seg(pam_feat + cam_feat)
        return pam_cam_out, self.pam_cls_seg(pam_feat), self.cam_cls_seg(cam_feat)

    def predict(
        self, inputs: Sequence[torch.Tensor], batch_img_metas: list[dict], test_cfg: dict | None
    ) -> torch.Tensor:
        return self.predict_by_feat(self.forward(inputs)[0], batch_img_metas)

    def loss_by_feat(  # type: ignore[override]
        self,
        seg_logits: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        batch_data_samples: Sequence[DataSample],
    ) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        for name, logits in zip(("pam_cam", "pam", "cam"), seg_logits, strict=True):
            losses.update(add_prefix(super().loss_by_feat(logits, batch_data_samples), name))
        return losses
