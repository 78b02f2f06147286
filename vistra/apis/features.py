"""``FeatureExtractor``: MMPretrain 1.x's feature extractor, for any model with a backbone
(classifiers, self-supervised pre-training models such as MAE).

    >>> extractor = FeatureExtractor('mae_shapes.py', pretrained='epoch_4.pth')
    >>> feats = extractor('shape.png')[0]     # a tuple: one tensor per backbone output
    >>> [f.shape for f in feats]

Each image's features are the batch's features indexed at that image (no batch dim).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.apis.inference import model_pipeline
from vistra.apis.inputs import ImageInput, batches, collect_inputs
from vistra.apis.model import as_model, list_models
from vistra.config import Config

STAGES = ("backbone", "neck", "pre_logits")


class FeatureExtractor:
    """Extract backbone (or neck) features of images (see the module doc)."""

    def __init__(
        self,
        model: nn.Module | str | os.PathLike | Config,
        pretrained: bool | str = True,
        device: str | torch.device | None = None,
    ) -> None:
        self.model = as_model(model, pretrained, device)
        if not hasattr(self.model, "extract_feat"):
            raise ValueError(f"{type(self.model).__name__} has no extract_feat()")
        self.config = self.model.cfg
        self.pipeline = model_pipeline(self.model)

    def __call__(
        self,
        inputs: ImageInput | Sequence[ImageInput],
        batch_size: int = 1,
        stage: str = "backbone",
    ) -> list:
        """One entry per image: a tensor or a tuple of tensors, as ``extract_feat`` gives."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        items, _ = collect_inputs(inputs)
        results: list = []
        for _, data in batches(self.pipeline, items, batch_size):
            results.extend(self.forward(data, stage))
        return results

    @torch.no_grad()
    def forward(self, data: dict, stage: str) -> list:
        images = self.model.data_preprocessor(data, False)["inputs"]
        feats = self._extract(images, stage)
        count = images[0].shape[0] if isinstance(images, list | tuple) else images.shape[0]
        return [_select(feats, i) for i in range(count)]

    def _extract(self, images: Any, stage: str) -> Any:
        takes_stage = "stage" in inspect.signature(self.model.extract_feat).parameters
        if takes_stage:
            return self.model.extract_feat(images, stage=stage)
        if stage != "backbone":
            raise ValueError(
                f"{type(self.model).__name__}.extract_feat gives backbone features only; "
                f"stage={stage!r} needs a classifier"
            )
        return self.model.extract_feat(images)

    @staticmethod
    def list_models(pattern: str | None = None) -> list[str]:
        return list_models(pattern)


def _select(feats: Any, index: int) -> Any:
    if isinstance(feats, torch.Tensor):
        return feats[index]
    return type(feats)(_select(f, index) for f in feats)
