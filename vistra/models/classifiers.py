"""``ImageClassifier`` (MMPretrain): backbone -> optional neck -> head.

State-dict keys are ``backbone.*``, ``neck.*`` and ``head.*`` (``head.fc.*`` for a linear
head), so MMPretrain checkpoints load as they are.
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
from vistra.registry import MODELS

_STAGES = ("backbone", "neck", "pre_logits")


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """Image classifier with MMPretrain's arguments.

    ``data_preprocessor`` defaults to ``ClsDataPreprocessor``; ``train_cfg=dict(augments=
    [...], probs=...)`` becomes its ``batch_augments`` (MMPretrain's rule). ``pretrained``
    is the deprecated spelling of ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        neck: dict | list[dict] | nn.Module | None = None,
        head: dict | nn.Module | None = None,
        pretrained: str | None = None,
        train_cfg: dict | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if pretrained is not None:
            warnings.warn(
                "ImageClassifier(pretrained=...) is deprecated, use init_cfg=dict(type='Pretrained', ...)",
                DeprecationWarning,
                stacklevel=2,
            )
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(
            data_preprocessor=_preprocessor_cfg(data_preprocessor, train_cfg), init_cfg=init_cfg
        )
        self.backbone = _build(backbone, "model.backbone")
        if neck is not None:
            self.neck = _build(neck, "model.neck")
        if head is not None:
            self.head = _build(head, "model.head")
        # A backbone may translate third-party checkpoints (e.g. timm names) as they load.
        if hasattr(self.backbone, "_checkpoint_filter"):
            self._register_load_state_dict_pre_hook(self.backbone._checkpoint_filter)

    @property
    def with_neck(self) -> bool:
        return getattr(self, "neck", None) is not None

    @property
    def with_head(self) -> bool:
        return getattr(self, "head", None) is not None

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: Sequence[DataSample] | None = None,
        mode: str = "tensor",
    ) -> Any:
        if mode == "tensor":
            feats = self.extract_feat(inputs)
            return self.head(feats) if self.with_head else feats
        if mode == "loss":
            return self.loss(inputs, data_samples)  # type: ignore[arg-type]
        if mode == "predict":
            return self.predict(inputs, data_samples)
        raise ValueError(f"invalid forward mode {mode!r}; choose 'tensor', 'loss' or 'predict'")

    def extract_feat(self, inputs: torch.Tensor, stage: str = "neck") -> Any:
        """Features after the ``'backbone'``, the ``'neck'`` (default) or the head's
        ``'pre_logits'``."""
        if stage not in _STAGES:
            raise ValueError(f"extract_feat stage must be one of {_STAGES}, got {stage!r}")
        x = self.backbone(inputs)
        if stage == "backbone":
            return x
        if self.with_neck:
            x = self.neck(x)
        if stage == "neck":
            return x
        if not self.with_head or not hasattr(self.head, "pre_logits"):
            raise ValueError("extract_feat(stage='pre_logits') needs a head with pre_logits()")
        return self.head.pre_logits(x)

    def loss(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        self._need_head("loss")
        return self.head.loss(self.extract_feat(inputs), data_samples)

    def predict(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample] | None = None
    ) -> list[DataSample]:
        self._need_head("predict")
        return self.head.predict(self.extract_feat(inputs), data_samples)

    def _need_head(self, mode: str) -> None:
        if not self.with_head:
            raise ValueError(
                f"ImageClassifier without a head cannot run mode={mode!r}; add model.head"
            )


def _build(cfg: dict | list | nn.Module, key_path: str) -> nn.Module:
    if isinstance(cfg, nn.Module):
        return cfg
    if isinstance(cfg, list | tuple):
        # MMEngine builds a list of configs as a Sequential (keys neck.0.*, neck.1.*):
        # MMPretrain's HRNet configs chain HRFuseScales and GlobalAveragePooling this way
        return nn.Sequential(*(_build(c, f"{key_path}[{i}]") for i, c in enumerate(cfg)))
    return MODELS.build(cfg, key_path=key_path)


def _preprocessor_cfg(
    data_preprocessor: dict | nn.Module | None, train_cfg: dict | None
) -> dict | nn.Module:
    if isinstance(data_preprocessor, nn.Module):
        if train_cfg:
            raise ValueError(
                "train_cfg batch augments cannot be added to an already built data_preprocessor; "
                "pass batch_augments to the preprocessor instead"
            )
        return data_preprocessor
    if data_preprocessor is not None and not isinstance(data_preprocessor, dict):
        raise TypeError(
            f"data_preprocessor must be a dict or an nn.Module, got {type(data_preprocessor).__name__}"
        )
    cfg = copy.deepcopy(data_preprocessor) if data_preprocessor else {}
    cfg.setdefault("type", "ClsDataPreprocessor")
    if train_cfg:
        cfg.setdefault("batch_augments", train_cfg)
    return cfg
