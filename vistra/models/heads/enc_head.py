"""``EncHead`` (`EncNet: Context Encoding for Semantic Segmentation
<https://arxiv.org/abs/1803.08904>`_), MMSegmentation 1.x.

Keys: ``bottleneck`` (3x3 on the last input), with ``add_lateral`` also
``lateral_convs.{i}`` and ``fusion``; ``enc_module.encoding_project``,
``enc_module.encoding.0.codewords``/``.scale`` (the :class:`Encoding` layer),
``enc_module.encoding.1`` (a 1-d norm over the codes), ``enc_module.fc.0``; with
``use_se_loss`` ``se_layer`` (the class-presence classifier); ``conv_seg``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule, build_norm_layer
from vistra.models.layers.encoding import Encoding
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS


def _norm1d_cfg(norm_cfg: dict | None) -> dict:
    """The 1-d twin of a 2-d norm config (upstream's rule: ``BN``/``IN`` get ``1d``
    appended, other names have ``2d`` replaced; no norm falls back to ``BN1d``)."""
    if norm_cfg is None:
        return dict(type="BN1d")
    cfg = dict(norm_cfg)
    name = cfg["type"]
    cfg["type"] = name + "1d" if name in ("BN", "IN") else name.replace("2d", "1d")
    return cfg


class EncModule(nn.Module):
    """Context encoding: project, encode against ``num_codes`` codewords, average the codes
    into a channel-attention vector ``gamma``; the output is ``relu(x * (1 + gamma))``."""

    def __init__(
        self,
        in_channels: int,
        num_codes: int,
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> None:
        super().__init__()
        self.encoding_project = ConvModule(
            in_channels, in_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg
        )
        self.encoding = nn.Sequential(
            Encoding(channels=in_channels, num_codes=num_codes),
            build_norm_layer(_norm1d_cfg(norm_cfg), num_codes)[1],
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Sequential(nn.Linear(in_channels, in_channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(encoding feature (N, C), re-weighted x)``."""
        encoding_feat = self.encoding(self.encoding_project(x)).mean(dim=1)
        gamma = self.fc(encoding_feat).view(x.size(0), x.size(1), 1, 1)
        return encoding_feat, F.relu_(x + x * gamma)


@MODELS.register_module()
class EncHead(BaseDecodeHead):
    """EncNet head. ``num_codes`` codewords; ``add_lateral`` fuses the other inputs (1x1
    laterals resized to the last one); ``use_se_loss`` adds the semantic-encoding loss:
    ``se_layer`` predicts which classes each image contains, trained by ``loss_se_decode``
    (a sigmoid BCE against the per-image class-presence vector) as ``loss_se``.

    With ``use_se_loss``, ``forward`` returns ``(seg_logits, se_logits)`` (upstream's
    ``mode='tensor'`` output too); ``predict`` uses the segmentation logits only.
    """

    def __init__(
        self,
        num_codes: int = 32,
        use_se_loss: bool = True,
        add_lateral: bool = False,
        loss_se_decode: dict = dict(  # noqa: B006 (never mutated)
            type="CrossEntropyLoss", use_sigmoid=True, loss_weight=0.2
        ),
        **kwargs,
    ) -> None:
        super().__init__(input_transform="multiple_select", **kwargs)
        if not isinstance(num_codes, int) or num_codes < 1:
            raise ValueError(f"EncHead num_codes must be a positive int, got {num_codes!r}")
        self.use_se_loss, self.add_lateral, self.num_codes = use_se_loss, add_lateral, num_codes
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.bottleneck = ConvModule(self.in_channels[-1], self.channels, 3, padding=1, **common)
        if add_lateral:
            self.lateral_convs = nn.ModuleList(
                ConvModule(c, self.channels, 1, **common) for c in self.in_channels[:-1]
            )
            self.fusion = ConvModule(
                len(self.in_channels) * self.channels, self.channels, 3, padding=1, **common
            )
        self.enc_module = EncModule(self.channels, num_codes=num_codes, **common)
        if use_se_loss:
            self.loss_se_decode = MODELS.build(loss_se_decode, key_path="loss_se_decode")
            self.se_layer = nn.Linear(self.channels, self.num_classes)

    def forward(  # type: ignore[override]
        self, inputs: Sequence[torch.Tensor]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        inputs = self._transform_inputs(inputs)
        feat = self.bottleneck(inputs[-1])
        if self.add_lateral:
            laterals = [
                resize(
                    conv(inputs[i]),
                    size=feat.shape[2:],
                    mode="bilinear",
                    align_corners=self.align_corners,
                )
                for i, conv in enumerate(self.lateral_convs)
            ]
            feat = self.fusion(torch.cat([feat, *laterals], dim=1))
        encode_feat, out = self.enc_module(feat)
        out = self.cls_seg(out)
        if self.use_se_loss:
            return out, self.se_layer(encode_feat)
        return out

    def predict(
        self, inputs: Sequence[torch.Tensor], batch_img_metas: list[dict], test_cfg: dict | None
    ) -> torch.Tensor:
        out = self.forward(inputs)
        seg_logits = out[0] if self.use_se_loss else out
        return self.predict_by_feat(seg_logits, batch_img_metas)

    @staticmethod
    def _convert_to_onehot_labels(seg_label: torch.Tensor, num_classes: int) -> torch.Tensor:
        """``(N, num_classes)``: 1 where the class occurs in the image's label map (values
        outside ``0..num_classes-1``, e.g. the ignore index, count for nothing)."""
        flat = seg_label.reshape(seg_label.size(0), -1)
        valid = (flat >= 0) & (flat < num_classes)
        onehot = seg_label.new_zeros((seg_label.size(0), num_classes))
        # An invalid pixel is clamped to some class but contributes 0 to its ``amax``.
        onehot.scatter_reduce_(
            1, flat.clamp(0, num_classes - 1).long(), valid.to(onehot.dtype), "amax"
        )
        return onehot

    def loss_by_feat(  # type: ignore[override]
        self,
        seg_logits: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        batch_data_samples: Sequence[DataSample],
    ) -> dict[str, torch.Tensor]:
        if not self.use_se_loss:
            return super().loss_by_feat(seg_logits, batch_data_samples)  # type: ignore[arg-type]
        seg_logits, se_logits = seg_logits  # type: ignore[misc]
        losses = super().loss_by_feat(seg_logits, batch_data_samples)
        labels = self._convert_to_onehot_labels(
            self._stack_batch_gt(batch_data_samples), self.num_classes
        )
        losses["loss_se"] = self.loss_se_decode(se_logits, labels)
        return losses
