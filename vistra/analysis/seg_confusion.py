"""The pixel confusion matrix of segmentation predictions (MMSegmentation's
``tools/analysis_tools/confusion_matrix.py``), from the PNGs ``vistra test --out DIR``
writes and the test set's ground truth.

Each prediction is matched to its sample by name (``<img_path stem>.png``, or
``<sample_idx:06d>.png`` for in-memory data), as ``IoUMetric(output_dir=...)`` names them,
not by sorted file order as upstream does, so a stray or missing file is reported instead
of shifting every later image. Ground truth comes from the test pipeline (so
``reduce_zero_label`` and ``label_map`` apply); pixels labelled ``ignore_index`` are left
out, and the diagonal then equals IoUMetric's per-class intersection.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vistra.data.errors import DataError
from vistra.evaluation.functional import confusion_matrix


def prediction_name(info: dict, index: int) -> str:
    """The PNG name IoUMetric gives sample ``index`` (see the module doc)."""
    if info.get("img_path"):
        return Path(info["img_path"]).stem + ".png"
    return f"{index:06d}.png"


def segmentation_confusion(
    dataset: Any,
    pred_dir: str | Path,
    num_classes: int,
    ignore_index: int = 255,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """``(C, C)`` int64 pixel counts over every test sample (rows: ground truth)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(2, "prediction folder not found", str(pred_dir))
    present = {n for n in os.listdir(pred_dir) if n.lower().endswith(".png")}
    if not present:
        raise DataError(
            f"{pred_dir} holds no PNG predictions; write them with "
            "`vistra test CONFIG CHECKPOINT --out DIR`"
        )
    names = [prediction_name(dataset.get_data_info(i), i) for i in range(len(dataset))]
    missing = [n for n in names if n not in present]
    if missing:
        raise DataError(
            f"{len(missing)} of the {len(names)} test samples have no prediction in "
            f"{pred_dir} (first: {missing[0]}; the folder has {len(present)} PNGs, e.g. "
            f"{sorted(present)[0]}); were they written by `vistra test --out` with this config "
            "and the same --cfg-options?"
        )
    total = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for index, name in enumerate(names):
        gt, reduced = _ground_truth(dataset, index)
        pred = _read_prediction(pred_dir / name, gt.shape, reduced)
        keep = (gt != ignore_index) & (gt >= 0) & (gt < num_classes)
        gt_kept, pred_kept = gt[keep], pred[keep]
        pred_kept = np.where((pred_kept >= 0) & (pred_kept < num_classes), pred_kept, -1)
        total += confusion_matrix(
            torch.from_numpy(pred_kept), torch.from_numpy(gt_kept), num_classes
        )
        if progress is not None:
            progress(index + 1, len(names))
    return total.numpy()


def _ground_truth(dataset: Any, index: int) -> tuple[np.ndarray, bool]:
    sample = dataset[index]
    data_sample = sample.get("data_samples") if isinstance(sample, dict) else None
    if data_sample is None or "gt_sem_seg" not in data_sample:
        raise DataError(
            f"the test pipeline gives sample {index} no gt_sem_seg: this tool needs a "
            "segmentation test set with annotations (LoadAnnotations, PackSegInputs)"
        )
    gt = data_sample.gt_sem_seg.data.squeeze(0).cpu().numpy().astype(np.int64)
    return gt, bool(data_sample.metainfo.get("reduce_zero_label", False))


def _read_prediction(path: Path, shape: tuple[int, ...], reduced: bool) -> np.ndarray:
    with Image.open(path) as image:
        pred = np.asarray(image).astype(np.int64)
    if pred.ndim != 2:
        raise DataError(f"{path}: a prediction PNG must be one label channel, got {pred.shape}")
    if pred.shape != tuple(shape):
        raise DataError(
            f"{path} is {pred.shape[1]}x{pred.shape[0]} but its ground truth is "
            f"{shape[1]}x{shape[0]}; the predictions were made on other data"
        )
    # IoUMetric wrote label + 1 for reduce_zero_label data (the file's own indices);
    # back to the model's, where 0 becomes -1: predicted as no class
    return pred - 1 if reduced else pred
