"""``STDCHead`` (`Rethinking BiSeNet For Real-time Semantic Segmentation
<https://arxiv.org/abs/2104.13188>`_), MMSegmentation 1.x: the detail-guidance head.

An ``FCNHead`` trained on boundaries instead of classes: the label map is convolved with a
fixed Laplacian at strides 1, 2 and 4, each thresholded at ``boundary_threshold``, the two
coarse ones upsampled (nearest), and the three fused by a fixed 1x1 kernel
(``fusion_kernel`` 0.6/0.3/0.1) and thresholded again into a 0/1 target.

Keys: FCNHead's (``convs.{i}``, ``conv_seg``) plus ``fusion_kernel`` (a frozen parameter,
so it is in the checkpoint); ``laplacian_kernel`` is a buffer (also in the state dict).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample, PixelData
from vistra.models.heads.fcn_head import FCNHead
from vistra.registry import MODELS


@MODELS.register_module()
class STDCHead(FCNHead):
    """``FCNHead`` whose loss targets are the label map's boundaries (see the module
    docstring); configs give it ``num_classes=2``."""

    def __init__(self, boundary_threshold: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.boundary_threshold = boundary_threshold
        laplacian = torch.tensor([-1, -1, -1, -1, 8, -1, -1, -1, -1], dtype=torch.float32)
        self.register_buffer("laplacian_kernel", laplacian.reshape(1, 1, 3, 3))
        fusion = torch.tensor([6.0 / 10, 3.0 / 10, 1.0 / 10], dtype=torch.float32)
        self.fusion_kernel = nn.Parameter(fusion.reshape(1, 3, 1, 1), requires_grad=False)

    def boundary_targets(self, seg_label: torch.Tensor) -> torch.Tensor:
        """0/1 boundary maps ``(N, 1, H, W)`` (long) of label maps ``(N, 1, H, W)``."""
        seg_label = seg_label.to(self.laplacian_kernel)
        t = self.boundary_threshold

        def edges(stride: int) -> torch.Tensor:
            out = F.conv2d(seg_label, self.laplacian_kernel, stride=stride, padding=1)
            return out.clamp(min=0)

        def binarize(x: torch.Tensor) -> torch.Tensor:
            # upstream's two in-place assignments, in their order (with t >= 1 the ones
            # set first are zeroed again)
            x = torch.where(x > t, torch.ones_like(x), x)
            return torch.where(x <= t, torch.zeros_like(x), x)

        full = edges(1)
        size = full.shape[2:]
        pyramid = torch.cat(
            [
                binarize(full),
                binarize(F.interpolate(edges(2), size, mode="nearest")),
                binarize(F.interpolate(edges(4), size, mode="nearest")),
            ],
            dim=1,
        )
        return binarize(F.conv2d(pyramid, self.fusion_kernel)).long()

    def loss_by_feat(
        self, seg_logits: torch.Tensor, batch_data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        # The class labels (0..C-1 and ignore_index) are not this head's targets, so they
        # are stacked without the base class's class-index check.
        missing = [i for i, s in enumerate(batch_data_samples) if "gt_sem_seg" not in s]
        if missing:
            raise KeyError(f"data samples {missing} have no 'gt_sem_seg'")
        seg_label = torch.stack([s.gt_sem_seg.data for s in batch_data_samples], dim=0)
        boundaries = [
            DataSample(metainfo=s.metainfo, gt_sem_seg=PixelData(data=b))
            for s, b in zip(batch_data_samples, self.boundary_targets(seg_label), strict=True)
        ]
        return super().loss_by_feat(seg_logits, boundaries)
