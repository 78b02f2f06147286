"""``ArcFaceClsHead`` (MMPretrain): additive angular margin classification.

Papers: `ArcFace: Additive Angular Margin Loss for Deep Face Recognition
<https://arxiv.org/abs/1801.07698>`_ and `Sub-center ArcFace
<https://link.springer.com/chapter/10.1007/978-3-030-58621-8_43>`_.

The logits are scaled cosines between the L2-normalised feature and L2-normalised class
centres. In training the angle to the sample's own class grows by that class's margin
``m`` (``cos(theta + m)``), which forces the features of a class into a tighter cone. With
``num_subcenters=k`` each class owns ``k`` centres and its cosine is the largest of the
``k`` (noisy samples gather around a sub-centre of their own instead of pulling the main
one).

Key layout (MMPretrain's): ``norm_product.weight`` of shape ``(num_classes * k,
in_channels)``, the ``k`` centres of a class in consecutive rows, no bias. The margins
are non-persistent buffers: they come from the config (or ``set_margins``), not from
checkpoints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.datasets.base import list_from_file
from vistra.data.structures import DataSample
from vistra.models.heads.cls_head import ClsHead
from vistra.registry import MODELS


def _margin_list(margins: float | Sequence[float] | str, num_classes: int) -> list[float]:
    """One margin per class from a number, a sequence or a ``.txt`` file (one per line)."""
    if isinstance(margins, bool):
        raise TypeError(f"ArcFaceClsHead margins must be a number, got {margins!r}")
    if isinstance(margins, (int, float)):
        values = [float(margins)] * num_classes
    elif isinstance(margins, str):
        if not margins.endswith(".txt"):
            raise ValueError(
                f"ArcFaceClsHead margins={margins!r}: a string must name a '.txt' file with "
                "one margin per line"
            )
        lines = list_from_file(os.path.expanduser(margins), "ArcFaceClsHead margins file")
        values = [float(line) for line in lines]
    elif isinstance(margins, Sequence) and all(
        isinstance(m, (int, float)) and not isinstance(m, bool) for m in margins
    ):
        values = [float(m) for m in margins]
    else:
        raise TypeError(
            "ArcFaceClsHead margins must be a float, a sequence of floats or a '.txt' file "
            f"path, got {margins!r}"
        )
    if len(values) != num_classes:
        raise ValueError(
            f"ArcFaceClsHead got {len(values)} margins for num_classes={num_classes}; "
            "give one per class"
        )
    return values


@MODELS.register_module()
class ArcFaceClsHead(ClsHead):
    """ArcFace / sub-center ArcFace head.

    ``scale`` multiplies the cosines (the radius of the hypersphere the paper puts the
    features on). ``margins`` is one margin for every class, a margin per class, or a
    ``.txt`` file of them. ``easy_margin`` applies the margin only where the cosine is
    positive; otherwise, past ``theta + m > pi`` (where ``cos(theta + m)`` would rise
    again), the monotonic substitute ``cos(theta) - m * sin(m)`` (insightface) is used.
    Predictions are the softmax of the scaled cosines, without margin (``ClsHead``).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        num_subcenters: int = 1,
        scale: float = 64.0,
        margins: float | Sequence[float] | str = 0.50,
        easy_margin: bool = False,
        loss: dict | nn.Module = dict(type="CrossEntropyLoss", loss_weight=1.0),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(loss=loss, init_cfg=init_cfg)
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(
                f"ArcFaceClsHead num_classes must be a non-negative int, got {num_classes!r}"
            )
        if not isinstance(num_subcenters, int) or num_subcenters < 1:
            raise ValueError(
                f"ArcFaceClsHead num_subcenters must be an int >= 1, got {num_subcenters!r}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_subcenters = num_subcenters
        self.scale = scale
        self.easy_margin = easy_margin
        # a plain bias-free linear layer holds the class centres; both sides are normalised
        # in forward, so the layer's own product is never used
        self.norm_product = nn.Linear(in_channels, num_classes * num_subcenters, bias=False)
        self._set_margin_buffers(_margin_list(margins, num_classes))

    def _set_margin_buffers(self, margins: list[float]) -> None:
        device = self.norm_product.weight.device
        m = torch.tensor(margins, dtype=torch.float32, device=device)
        # cos(theta + m) decreases in theta only while theta + m <= pi, i.e. while
        # cos(theta) > cos(pi - m); past that the logit continues linearly as
        # cos(theta) - m * sin(pi - m) (insightface's substitute), keeping it monotonic.
        self.register_buffer("margins", m, persistent=False)
        self.register_buffer("sinm_m", torch.sin(math.pi - m) * m, persistent=False)
        self.register_buffer("threshold", torch.cos(math.pi - m), persistent=False)

    def set_margins(self, margins: float | Sequence[float]) -> None:
        """Replace the margins (e.g. by an adaptive-margins hook): one, or one per class."""
        self._set_margin_buffers(_margin_list(margins, self.num_classes))

    def cosine(self, pre_logits: torch.Tensor) -> torch.Tensor:
        """``(N, num_classes)`` cosines to the nearest centre of each class."""
        weight = F.normalize(self.norm_product.weight)
        cosine = F.linear(F.normalize(pre_logits), weight)
        if self.num_subcenters > 1:
            cosine = cosine.view(-1, self.num_classes, self.num_subcenters).amax(dim=2)
        return cosine

    def _with_margin(self, cosine: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``cosine`` with the target class's entry replaced by its margin logit.

        Only the target column goes through ``acos``: its gradient is unbounded at
        cos = +-1, and computing it for every class would turn the zero gradient of the
        other columns into NaN there.
        """
        if not (target.dim() == 1 or (target.dim() == 2 and target.shape[1] == 1)):
            raise ValueError(
                f"ArcFaceClsHead needs class-index targets of shape (N,) or (N, 1), "
                f"got {tuple(target.shape)}"
            )
        target = target.reshape(-1, 1).long()
        cos_t = cosine.gather(1, target)
        m = self.margins[target]
        # clamp: a rounding step past +-1 would make acos NaN
        phi = torch.cos(torch.acos(cos_t.clamp(-1.0, 1.0)) + m)
        if self.easy_margin:
            phi = torch.where(cos_t > 0, phi, cos_t)
        else:
            phi = torch.where(cos_t > self.threshold[target], phi, cos_t - self.sinm_m[target])
        return cosine.scatter(1, target, phi)

    def forward(
        self, feats: tuple[torch.Tensor, ...], target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scaled cosines; with ``target`` (class indices), margins on the targets."""
        pre_logits = self.pre_logits(feats)
        # angles are sensitive to rounding: always compute them in float32, AMP or not
        with torch.autocast(device_type=pre_logits.device.type, enabled=False):
            cosine = self.cosine(pre_logits.float())
            logit = cosine if target is None else self._with_margin(cosine, target)
        return self.scale * logit

    def loss(
        self, feats: tuple[torch.Tensor, ...], data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        if not data_samples or "gt_label" not in data_samples[0]:
            raise ValueError("ArcFaceClsHead.loss needs data samples with gt_label")
        labels = torch.cat([s.gt_label for s in data_samples])
        labels = labels.to(feats[-1].device)
        # the margin goes on the hard label; soft targets (Mixup) only enter the loss
        return self._get_loss(self(feats, labels), data_samples)
