"""``ImageClassificationInferencer``: MMPretrain 1.x's classification inferencer.

    >>> inferencer = ImageClassificationInferencer('cls_shapes.py', pretrained='epoch_1.pth')
    >>> inferencer('shape.png')[0]
    {'pred_scores': array([...]), 'pred_label': 2, 'pred_score': 0.91, 'pred_class': 'circle'}

Arguments and result dicts are MMPretrain's. Unlike MMPretrain, ``pretrained=True`` with a
config file loads the config's ``load_from`` or fails loudly, instead of warning and
predicting with random weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vistra.apis.inference import classification_results, model_pipeline, predict_batches
from vistra.apis.inputs import ImageInput, Item, collect_inputs, read_rgb
from vistra.apis.model import as_model, list_models, task_of
from vistra.apis.outputs import save_image
from vistra.config import Config
from vistra.data.structures import DataSample


class ImageClassificationInferencer:
    """Predict the class of images with a classifier.

    ``model``: a built model (``init_model``/``get_model``), a config file or Config, or a
    zoo name (``list_models()``); ``pretrained``: a checkpoint path/URL, True (the zoo's
    or the config's ``load_from``) or False; ``classes`` overrides the names of labels.
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike | Config,
        pretrained: bool | str = True,
        device: str | torch.device | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.model = as_model(model, pretrained, device)
        if task_of(self.model) != "classification":
            raise ValueError(
                f"{type(self.model).__name__} is not a classifier; use "
                "ImageSegmentationInferencer or FeatureExtractor"
            )
        self.config = self.model.cfg
        self.pipeline = model_pipeline(self.model)
        meta = getattr(self.model, "dataset_meta", None) or {}
        self.classes = list(classes) if classes is not None else meta.get("classes")
        self.visualizer: Any = None

    def __call__(
        self,
        inputs: ImageInput | Sequence[ImageInput],
        return_datasamples: bool = False,
        batch_size: int = 1,
        show: bool = False,
        wait_time: float = 0,
        show_dir: str | os.PathLike | None = None,
        resize: int | None = None,
        rescale_factor: float | None = None,
        draw_score: bool = True,
    ) -> list:
        """A list with one result per image: MMPretrain's dict, or the DataSample with
        ``return_datasamples``. ``show``/``show_dir`` draw each image with its prediction
        (in a window / as ``<show_dir>/<image stem>.png``)."""
        items, _ = collect_inputs(inputs)
        preds: list[DataSample] = []
        for _, samples in predict_batches(self.model, items, batch_size, self.pipeline):
            preds.extend(samples)
        if show or show_dir is not None:
            self.visualize(
                items, preds, show, wait_time, show_dir, resize, rescale_factor, draw_score
            )
        if return_datasamples:
            return preds
        return classification_results(preds, self.classes)

    def visualize(
        self,
        items: Sequence[Item],
        preds: Sequence[DataSample],
        show: bool = False,
        wait_time: float = 0,
        show_dir: str | os.PathLike | None = None,
        resize: int | None = None,
        rescale_factor: float | None = None,
        draw_score: bool = True,
    ) -> list[np.ndarray]:
        """The drawings (RGB arrays), also shown and/or written to ``show_dir``."""
        from vistra.visualization import Visualizer

        if self.visualizer is None:
            self.visualizer = Visualizer()
        drawings = []
        for index, (item, sample) in enumerate(zip(items, preds)):
            name = Path(item.source).stem if item.is_file else str(index)
            drawn = self.visualizer.visualize_cls(
                read_rgb(item),
                sample,
                classes=self.classes,
                draw_gt=False,
                draw_score=draw_score,
                resize=resize,
                rescale_factor=rescale_factor,
                show=show,
                wait_time=wait_time,
                name=name,
            )
            if show_dir is not None:
                save_image(drawn, Path(show_dir) / f"{name}.png")
            drawings.append(drawn)
        return drawings

    @staticmethod
    def list_models(pattern: str | None = None) -> list[str]:
        return list_models(pattern)
