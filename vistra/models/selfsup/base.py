"""``BaseSelfSupervisor``: what MMPretrain's self-supervised algorithms share.

A backbone, an optional neck and head (and target generator), a data preprocessor that
defaults to ``SelfSupDataPreprocessor``, and the forward modes ``'tensor'`` (backbone
features) and ``'loss'``. Pre-training has no ``'predict'`` mode: evaluating a
self-supervised backbone is done by a classifier that loads it (linear probe,
fine-tuning) or by kNN on its features.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModel
from vistra.models.selfsup import data_preprocessor as _preprocessor  # noqa: F401 (registers)
from vistra.registry import MODELS


def _build(cfg: dict | nn.Module | None, key_path: str) -> nn.Module | None:
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict):
        raise TypeError(f"{key_path} must be a config dict or an nn.Module, got {cfg!r}")
    return MODELS.build(cfg, key_path=key_path)


class BaseSelfSupervisor(BaseModel):
    """Base of self-supervised algorithms (MMPretrain's arguments and attribute names).

    ``pretrained`` is the deprecated spelling of ``init_cfg=dict(type='Pretrained',
    checkpoint=...)``. Subclasses implement :meth:`loss`; :meth:`extract_feat` returns the
    backbone's output by default.
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        neck: dict | nn.Module | None = None,
        head: dict | nn.Module | None = None,
        target_generator: dict | nn.Module | None = None,
        pretrained: str | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if pretrained is not None:
            warnings.warn(
                f"{type(self).__name__}(pretrained=...) is deprecated, use "
                "init_cfg=dict(type='Pretrained', checkpoint=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        if data_preprocessor is None or isinstance(data_preprocessor, dict):
            data_preprocessor = copy.deepcopy(data_preprocessor) if data_preprocessor else {}
            data_preprocessor.setdefault("type", "SelfSupDataPreprocessor")
        elif not isinstance(data_preprocessor, nn.Module):
            raise TypeError(
                "data_preprocessor must be a dict or an nn.Module, got "
                f"{type(data_preprocessor).__name__}"
            )
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = _build(backbone, "model.backbone")
        self.neck = _build(neck, "model.neck")
        self.head = _build(head, "model.head")
        self.target_generator = _build(target_generator, "model.target_generator")

    @property
    def with_neck(self) -> bool:
        return self.neck is not None

    @property
    def with_head(self) -> bool:
        return self.head is not None

    @property
    def with_target_generator(self) -> bool:
        return self.target_generator is not None

    def forward(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
        mode: str = "tensor",
    ) -> Any:
        if mode == "tensor":
            return self.extract_feat(inputs)
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            raise ValueError(
                f"{type(self).__name__} is a pre-training model and has no 'predict' mode: "
                "evaluate its backbone with a linear probe, fine-tuning or kNN instead "
                "(a pre-training config needs no val_dataloader)"
            )
        raise ValueError(f"invalid forward mode {mode!r}; choose 'tensor' or 'loss'")

    def extract_feat(self, inputs: torch.Tensor) -> Any:
        """The backbone's features of ``inputs``."""
        return self.backbone(inputs)

    def loss(
        self, inputs: torch.Tensor | list[torch.Tensor], data_samples: Sequence[DataSample] | None
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")


def stacked_field(data_samples: Sequence[DataSample], name: str) -> torch.Tensor:
    """``name`` (``'mask'``, ``'sample_idx'``, ...) of every sample, stacked along dim 0.

    Takes both packages' layouts: MMPretrain's ``PackInputs`` stores the tensor itself
    (``sample.mask``), MMSelfSup's ``PackSelfSupInputs`` an element holding it
    (``sample.mask.value``); ``sample_idx`` may also be metainfo (an int).
    """
    if not data_samples:
        raise ValueError(f"the batch has no data samples to read {name!r} from")
    values = []
    for i, sample in enumerate(data_samples):
        value = sample.get(name)  # a field or a metainfo key
        if value is None:
            raise KeyError(
                f"data sample {i} has no {name!r}: the pipeline must produce it (e.g. a mask "
                f"generator) and pack it: PackInputs(algorithm_keys=[{name!r}]) or "
                "PackSelfSupInputs"
            )
        value = getattr(value, "value", value)
        values.append(torch.as_tensor(value))
    return torch.stack(values)
