"""The most confident right and wrong classifications, drawn (MMPretrain's
``tools/analysis_tools/analyze_results.py``).

Predictions are ranked by their top score, highest first, and the first ``topk`` correct
ones go to ``success/`` and the first ``topk`` wrong ones to ``fail/``, each image with its
ground truth, prediction and score written on it, beside a ``success.json`` /
``fail.json`` listing them. (MMPretrain 1.2.0 sorts in ascending order, so its folders
hold the *least* confident predictions; vistra shows what the tool's help promises.)
The images come from the config's test set, looked up by ``sample_idx``; a ground truth
that differs from the one in the predictions file means the file belongs to other data,
and is an error rather than a folder of mislabelled pictures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vistra.analysis import output
from vistra.analysis.predictions import Prediction
from vistra.data.errors import DataError


def split_success_fail(
    predictions: Sequence[Prediction], topk: int
) -> tuple[list[Prediction], list[Prediction]]:
    """The ``topk`` most confident correct and wrong predictions (ties: file order)."""

    def confidence(p: Prediction) -> float:
        return -math.inf if math.isnan(p.score) else p.score

    ordered = sorted(predictions, key=confidence, reverse=True)
    success = [p for p in ordered if p.correct][:topk]
    fail = [p for p in ordered if not p.correct][:topk]
    return success, fail


def sample_image(dataset: Any, prediction: Prediction, bgr: bool) -> tuple[np.ndarray, str]:
    """The RGB image of ``prediction``'s sample and a file stem for it."""
    from vistra.data.image_io import imread

    if prediction.sample_idx is None:
        if not prediction.img_path:
            raise DataError(
                f"prediction {prediction.position} has neither sample_idx nor img_path: "
                "cannot find its image"
            )
        return imread(prediction.img_path, channel_order="rgb"), Path(prediction.img_path).stem
    info = _data_info(dataset, prediction)
    if info.get("img") is not None:
        image = np.asarray(info["img"])
        if image.ndim == 3 and bgr:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), str(prediction.sample_idx)
    if info.get("img_path"):
        return imread(info["img_path"], channel_order="rgb"), Path(info["img_path"]).stem
    raise DataError(f"test sample {prediction.sample_idx} has neither 'img' nor 'img_path'")


def _data_info(dataset: Any, prediction: Prediction) -> dict:
    index = prediction.sample_idx
    if not 0 <= index < len(dataset):
        raise DataError(
            f"prediction {prediction.position} is of sample_idx {index}, but the config's test "
            f"set has {len(dataset)} samples: were the predictions made with this config "
            "(and the same --cfg-options)?"
        )
    info = dataset.get_data_info(index)
    truth = info.get("gt_label")
    if (
        truth is not None
        and np.asarray(truth).size == 1
        and int(np.asarray(truth)) != prediction.gt_label
    ):
        raise DataError(
            f"sample {index}: the predictions file says gt_label {prediction.gt_label}, the "
            f"config's test set says {int(np.asarray(truth))}: the predictions were made on "
            "other data (or with other --cfg-options)"
        )
    return info


def draw_prediction(
    image: np.ndarray,
    prediction: Prediction,
    classes: Sequence[str] | None,
    rescale_factor: float | None = None,
) -> np.ndarray:
    """``image`` with ``GT: ...`` and ``Pred: ... (score)`` written on it."""
    import torch

    from vistra.data.structures import DataSample
    from vistra.visualization.drawing import as_rgb_image
    from vistra.visualization.visualizer import draw_classification

    sample = DataSample().set_gt_label(prediction.gt_label).set_pred_label(prediction.pred_label)
    if prediction.pred_score is not None:
        sample.set_pred_score(torch.from_numpy(prediction.pred_score))
    return draw_classification(as_rgb_image(image), sample, classes, rescale_factor=rescale_factor)


def load_images(
    predictions: Sequence[Prediction], dataset: Any, bgr: bool
) -> list[tuple[Prediction, np.ndarray, str]]:
    """Each prediction with its image and file stem, all read before anything is written,
    so that a mismatch found at the tenth image leaves no folder half-written."""
    return [(p, *sample_image(dataset, p, bgr)) for p in predictions]


def save_group(
    out_dir: str | Path,
    folder: str,
    items: Sequence[tuple[Prediction, np.ndarray, str]],
    classes: Sequence[str] | None,
    rescale_factor: float | None = None,
) -> Path:
    """Draw ``items`` (from :func:`load_images`) into ``out_dir/folder/`` with
    ``folder.json`` listing them."""
    target = Path(out_dir) / folder
    target.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    listing = []
    for prediction, image, stem in items:
        name = output.unique_name(stem, taken)
        output.save_png(target / name, draw_prediction(image, prediction, classes, rescale_factor))
        listing.append(_describe(prediction, name))
    output.write_text(target / f"{folder}.json", json.dumps(listing, indent=2) + "\n")
    return target


def _describe(prediction: Prediction, name: str) -> dict:
    score = None if prediction.pred_score is None else prediction.pred_score.tolist()
    return {
        "file": name,
        "sample_idx": prediction.sample_idx,
        "img_path": prediction.img_path,
        "gt_label": prediction.gt_label,
        "pred_label": prediction.pred_label,
        "score": None if math.isnan(prediction.score) else prediction.score,
        "pred_score": score,
    }
