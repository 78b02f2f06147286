"""RotationPred: learn features by predicting which of four rotations an image shows.

Gidaris, Singh and Komodakis, "Unsupervised Representation Learning by Predicting Image
Rotations" (2018). ``RotationWithLabels`` turns every image into four views (0, 90, 180
and 270 degrees clockwise) with labels ``[0, 1, 2, 3]``;
:class:`RotationPredDataPreprocessor` interleaves them into one ``(4N, C, H, W)`` batch
(the four rotations of image ``i`` are rows ``4i .. 4i + 3``), the backbone encodes it and
MMSelfSup's ``ClsHead`` (pooled linear classifier, key ``head.fc_cls``,
in :mod:`~vistra.models.selfsup.multi_cls_head`)
scores the four classes with cross-entropy.

Key layout (MMSelfSup): ``backbone.*``, ``head.fc_cls.{weight,bias}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vistra.data.structures import DataSample
from vistra.models.selfsup import multi_cls_head  # noqa: F401 (MMSelfSup's ClsHead)
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.data_preprocessor import SelfSupDataPreprocessor
from vistra.registry import MODELS

_LINEAR_BN_INIT = [
    dict(type="Normal", std=0.01, layer="Linear"),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]


def pseudo_labels(owner: str, data_samples: Sequence[DataSample] | None, key: str) -> torch.Tensor:
    """``sample.pseudo_label.<key>`` of every sample, stacked and flattened."""
    labels = []
    for i, sample in enumerate(data_samples or ()):
        pseudo = sample.get("pseudo_label")
        value = getattr(pseudo, key, None) if pseudo is not None else None
        if value is None:
            raise KeyError(
                f"{owner}: data sample {i} has no pseudo_label.{key}; the pipeline must pack "
                f"it: PackSelfSupInputs(pseudo_label_keys=[{key!r}, ...])"
            )
        labels.append(torch.as_tensor(value))
    if not labels:
        raise ValueError(f"{owner}: the batch has no data samples to read {key!r} from")
    return torch.flatten(torch.stack(labels, 0))


# --------------------------------------------------------------------------- preprocessor
def _as_views(owner: str, inputs: Any, count: int) -> list[torch.Tensor]:
    if not isinstance(inputs, (list, tuple)) or len(inputs) != count:
        got = f"{len(inputs)} view(s)" if isinstance(inputs, (list, tuple)) else "one tensor"
        raise ValueError(f"{owner} needs {count} views per image, got {got}")
    return list(inputs)


@MODELS.register_module()
class RotationPredDataPreprocessor(SelfSupDataPreprocessor):
    """Normalise the four rotations, then interleave them: ``[(4N, C, H, W)]``."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        views = _as_views("RotationPredDataPreprocessor (RotationWithLabels)", data["inputs"], 4)
        img = torch.stack(views, 1)
        data["inputs"] = [img.view(-1, *img.shape[2:])]
        return data


# --------------------------------------------------------------------------- model
@MODELS.register_module()
class RotationPred(BaseSelfSupervisor):
    """Rotation prediction (MMSelfSup's arguments); needs ``pseudo_label.rot_label``."""

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(
        self, inputs: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
    ) -> dict[str, torch.Tensor]:
        x = self.extract_feat(inputs)
        labels = pseudo_labels("RotationPred", data_samples, "rot_label")
        return dict(loss=self.head(x, labels.to(x[0].device)))
