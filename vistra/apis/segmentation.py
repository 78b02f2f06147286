"""``ImageSegmentationInferencer`` (also ``MMSegInferencer``): MMSegmentation 1.x's
inferencer, with its arguments and its ``{'predictions', 'visualization'}`` results.

    >>> inferencer = MMSegInferencer('seg_shapes.py', weights='iter_8.pth')
    >>> out = inferencer('shape.png', out_dir='outputs')
    >>> out['predictions'].shape       # (H, W) label map
    (64, 64)

``out_dir`` writes ``<out_dir>/vis/<image name>`` (the prediction drawn over the image)
and ``<out_dir>/pred/<NNNNNNNN>_pred.png`` (label indices), as MMSegmentation does.
Unlike MMSegmentation, a model without a checkpoint is an error (weights=False builds
initial weights on purpose), and unknown classes are numbered rather than replaced by
Cityscapes' names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vistra.apis.inference import model_pipeline, predict_batches
from vistra.apis.inputs import ImageInput, Item, collect_inputs, read_rgb
from vistra.apis.model import as_model, task_of
from vistra.apis.outputs import save_image
from vistra.config import Config
from vistra.data.structures import DataSample
from vistra.registry import DATASETS, did_you_mean

DATASET_NAMES = {
    "ade20k": "ADE20KDataset",
    "ade": "ADE20KDataset",
    "cityscapes": "CityscapesDataset",
    "voc": "PascalVOCDataset",
    "pascal_voc": "PascalVOCDataset",
}


def dataset_meta_by_name(name: str) -> dict:
    """``classes``/``palette`` of a dataset named as MMSegmentation's ``dataset_name``."""
    key = name.lower().replace("-", "_")
    if key not in DATASET_NAMES:
        raise ValueError(
            f"unknown dataset_name {name!r}.{did_you_mean(key, list(DATASET_NAMES))} "
            f"Known: {', '.join(DATASET_NAMES)}"
        )
    return dict(DATASETS.get(DATASET_NAMES[key]).METAINFO)


def draw_segmentation(
    image: np.ndarray,
    sample: DataSample,
    dataset_meta: dict,
    opacity: float = 0.8,
    with_labels: bool = True,
) -> np.ndarray:
    """The predicted label map blended over ``image`` (RGB), class names on the regions."""
    from vistra.visualization.drawing import (
        as_label_map,
        draw_region_names,
        overlay_sem_seg,
        resize_label_map,
        resolve_palette,
    )

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    classes = dataset_meta.get("classes")
    palette = resolve_palette(dataset_meta.get("palette"), classes)
    label_map = as_label_map(sample.pred_sem_seg.data, "pred_sem_seg")
    label_map = resize_label_map(label_map, *image.shape[:2])
    drawn = overlay_sem_seg(image, label_map, palette, opacity)
    if with_labels:
        names = list(classes) if classes else [str(i) for i in range(len(palette))]
        drawn = draw_region_names(drawn, label_map, names)
    return drawn


class ImageSegmentationInferencer:
    """Segment images with a segmentor (see the module doc for outputs).

    ``model``: a built model, a config file or Config, or a zoo name; ``weights``: the
    checkpoint (None with a zoo name: its published one); ``classes``/``palette``/
    ``dataset_name`` override the names and colours used for drawing.
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike | Config,
        weights: str | os.PathLike | bool | None = None,
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        dataset_name: str | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        zoo_name = isinstance(model, str) and Path(model).suffix not in (".py", ".json", ".yaml")
        if weights is None and zoo_name:
            weights = True
        elif weights is None and not isinstance(model, nn.Module):
            from vistra.checkpoint import CheckpointError

            raise CheckpointError(
                "MMSegInferencer needs weights=CHECKPOINT with a config (weights=False: "
                "predict with initial, untrained weights)"
            )
        self.model = as_model(model, weights, device)
        if task_of(self.model) != "segmentation":
            raise ValueError(f"{type(self.model).__name__} is not a segmentor")
        self.pipeline = model_pipeline(self.model)
        meta = dict(getattr(self.model, "dataset_meta", None) or {})
        if dataset_name is not None:
            meta.update(dataset_meta_by_name(dataset_name))
        if classes is not None:
            meta["classes"] = tuple(classes)
        if palette is not None:
            meta["palette"] = [list(c) for c in palette]
        self.dataset_meta = meta
        self.num_visualized_imgs = 0
        self.num_pred_imgs = 0

    def __call__(
        self,
        inputs: ImageInput | Sequence[ImageInput],
        batch_size: int = 1,
        return_vis: bool = False,
        show: bool = False,
        wait_time: float = 0,
        out_dir: str | os.PathLike = "",
        img_out_dir: str = "vis",
        pred_out_dir: str = "pred",
        return_datasamples: bool = False,
        opacity: float = 0.8,
        with_labels: bool = True,
    ) -> dict | DataSample | list[DataSample]:
        """``{'predictions': label map(s), 'visualization': drawing(s)}`` (one array each
        for one image, lists for several), or the DataSample(s) with ``return_datasamples``."""
        items, _ = collect_inputs(inputs)
        preds: list[DataSample] = []
        for _, samples in predict_batches(self.model, items, batch_size, self.pipeline):
            preds.extend(samples)
        vis_dir = os.path.join(out_dir, img_out_dir) if out_dir else ""
        drawings = None
        if show or vis_dir or return_vis:
            drawings = self.visualize(items, preds, show, wait_time, vis_dir, opacity, with_labels)
        if return_datasamples:
            return preds[0] if len(preds) == 1 else preds
        label_dir = os.path.join(out_dir, pred_out_dir) if out_dir else ""
        return self.postprocess(preds, drawings if return_vis else None, label_dir)

    def visualize(
        self,
        items: Sequence[Item],
        preds: Sequence[DataSample],
        show: bool = False,
        wait_time: float = 0,
        img_out_dir: str = "",
        opacity: float = 0.8,
        with_labels: bool = True,
    ) -> list[np.ndarray]:
        """Drawings of each prediction, shown and/or written to ``img_out_dir``."""
        drawings = []
        for item, sample in zip(items, preds):
            drawn = draw_segmentation(
                read_rgb(item), sample, self.dataset_meta, opacity, with_labels
            )
            if item.is_file:
                name = os.path.basename(item.source)
            else:
                name = f"{self.num_visualized_imgs:08d}_vis.png"
            if show:
                self._visualizer().show(drawn, win_name=name, wait_time=wait_time)
            if img_out_dir:
                save_image(drawn, Path(img_out_dir) / name)
            drawings.append(drawn)
            self.num_visualized_imgs += 1
        return drawings

    def _visualizer(self) -> Any:
        from vistra.visualization import Visualizer

        if getattr(self, "_vis", None) is None:
            self._vis = Visualizer(alpha=0.8)
        return self._vis

    def postprocess(
        self,
        preds: Sequence[DataSample],
        visualization: list[np.ndarray] | None,
        pred_out_dir: str = "",
    ) -> dict:
        predictions = []
        for sample in preds:
            label_map = sample.pred_sem_seg.numpy()[0]
            if pred_out_dir:
                name = f"{self.num_pred_imgs:08d}_pred.png"
                save_image(label_map.astype(np.uint8), Path(pred_out_dir) / name)
            predictions.append(label_map)
            self.num_pred_imgs += 1
        vis: Any = visualization if visualization is not None else []
        if len(predictions) == 1:
            return {"predictions": predictions[0], "visualization": vis[0] if vis else vis}
        return {"predictions": predictions, "visualization": vis}


MMSegInferencer = ImageSegmentationInferencer
