"""``IoUMetric``: semantic segmentation scores from per-class pixel histograms.

Same arguments, keys (``aAcc``, ``mIoU``, ``mAcc``, ``mDice``, ``mFscore``,
``mPrecision``, ``mRecall``), rounding and per-class table as MMSegmentation 1.x. Each
image leaves only four ``num_classes``-long histograms behind, so memory and the
cross-rank gather do not grow with image size.
"""

from __future__ import annotations

import logging
import os
import os.path as osp
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from vistra.config import ConfigError
from vistra.evaluation.functional import (
    IOU_METRIC_CHOICES,
    intersect_and_union,
    round_percent,
    sum_areas,
    total_area_to_metrics,
)
from vistra.evaluation.metric import BaseMetric
from vistra.evaluation.metrics.device_results import DeviceResults
from vistra.registry import METRICS, did_you_mean

logger = logging.getLogger(__name__)


@METRICS.register_module()
class IoUMetric(DeviceResults, BaseMetric):
    """Intersection over union and related per-class scores.

    After ``evaluate``, ``classwise_results`` holds the per-class table as
    ``{'IoU': {'road': 97.5, ...}, 'Acc': {...}, ...}`` (percent rounded to 2 decimals
    in float32, NaN for a class absent from both prediction and label) and ``class_table`` its text; both are
    set on the rank that computes (rank 0). With ``format_only`` the predictions are
    written as PNGs to ``output_dir`` and no scores are computed.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        iou_metrics: Sequence[str] | str = ("mIoU",),
        nan_to_num: float | None = None,
        beta: float = 1,
        collect_device: str = "cpu",
        output_dir: str | None = None,
        format_only: bool = False,
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        metrics = [iou_metrics] if isinstance(iou_metrics, str) else list(iou_metrics)
        for name in metrics:
            if name not in IOU_METRIC_CHOICES:
                raise ValueError(
                    f"IoUMetric(iou_metrics=...) got {name!r}.{did_you_mean(name, IOU_METRIC_CHOICES)}"
                    f" Choose from {list(IOU_METRIC_CHOICES)}"
                )
        if format_only and not output_dir:
            raise ConfigError(
                "IoUMetric(format_only=True) writes the predictions only and needs output_dir, "
                "the folder for the PNGs (vistra test sets it from --out DIR)"
            )
        self.ignore_index = ignore_index
        self.metrics = metrics
        self.nan_to_num = nan_to_num
        self.beta = beta
        self.output_dir = output_dir
        self.format_only = format_only
        self.classwise_results: dict[str, dict[str, float]] = {}
        self.class_table = ""
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)

    def _class_names(self) -> list[str]:
        meta = self.dataset_meta or {}
        if "classes" not in meta:
            raise KeyError(
                "IoUMetric needs dataset_meta['classes'] (set by the evaluator from the "
                f"dataset's metainfo); got dataset_meta={self.dataset_meta!r}"
            )
        return list(meta["classes"])

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        num_classes = len(self._class_names())
        for sample in data_samples:
            pred_label = sample["pred_sem_seg"]["data"].squeeze()
            if not self.format_only:  # test sets submitted for scoring carry no labels
                label = sample["gt_sem_seg"]["data"].squeeze().to(pred_label)
                areas = intersect_and_union if pred_label.device.type == "cpu" else device_areas
                self.results.append(areas(pred_label, label, num_classes, self.ignore_index))
            if self.output_dir is not None:
                self._save_prediction(pred_label, sample)
        self.settle_results()

    def _save_prediction(self, pred_label: torch.Tensor, sample: dict) -> None:
        if sample.get("img_path"):
            basename = osp.splitext(osp.basename(sample["img_path"]))[0]
        elif sample.get("sample_idx") is not None:  # in-memory data: name by index
            basename = f"{int(sample['sample_idx']):06d}"
        else:
            raise KeyError(
                "IoUMetric(output_dir=...) names PNGs after 'img_path' or 'sample_idx', "
                "which the sample lacks"
            )
        mask = pred_label.cpu().numpy()
        # With reduce_zero_label the model predicts class i for on-disk label i + 1
        # (0 meant "other"); shift back so the PNG uses the dataset's own indices.
        if sample.get("reduce_zero_label", False):
            mask = mask + 1
        path = osp.abspath(osp.join(self.output_dir, f"{basename}.png"))
        Image.fromarray(mask.astype(np.uint8)).save(path)

    def compute_metrics(self, results: list) -> dict[str, float]:
        if self.format_only:
            logger.info("results are saved to %s", self.output_dir)
            return {}
        if not results:
            raise ValueError("IoUMetric got no results to evaluate: no sample was processed")
        totals = [sum_areas(areas) for areas in zip(*results)]
        ret_metrics = total_area_to_metrics(*totals, self.metrics, self.nan_to_num, self.beta)

        # float32 throughout, as MMSegmentation: the values are what it returns (and what
        # its test JSON holds), the table cells what it prints (str of a float32).
        with warnings.catch_warnings():  # a metric that is NaN for every class stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            summary = {k: round_percent(np.nanmean(v)).item() for k, v in ret_metrics.items()}
        metrics = {k if k == "aAcc" else "m" + k: v for k, v in summary.items()}

        class_names = self._class_names()
        per_class = {k: round_percent(v) for k, v in ret_metrics.items() if k != "aAcc"}
        self.classwise_results = {
            k: dict(zip(class_names, v.tolist())) for k, v in per_class.items()
        }
        columns = {"Class": class_names, **{k: [str(x) for x in v] for k, v in per_class.items()}}
        self.class_table = format_table(columns)
        logger.info("per class results:")
        logger.info("\n%s", self.class_table)
        return metrics

    # MMSegmentation exposes the maths as static methods; users' metrics call them so.
    intersect_and_union = staticmethod(intersect_and_union)
    total_area_to_metrics = staticmethod(total_area_to_metrics)


def device_areas(
    pred_label: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The counts of :func:`intersect_and_union`, left on the tensors' device.

    Without boolean indexing or ``bincount`` (both wait for the GPU to size their output):
    each pixel adds one to its class's bin, or to a spare last bin when it is ignored or
    out of range, and the spare bin is dropped. Exact ``int64`` counts, the same values.
    """
    pred_label, label = pred_label.reshape(-1).long(), label.reshape(-1).long()
    keep = label != ignore_index
    spare = torch.full_like(label, num_classes)

    def histogram(values: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
        bins = torch.where(counted & (values >= 0) & (values < num_classes), values, spare)
        counts = torch.zeros(num_classes + 1, dtype=torch.int64, device=values.device)
        return counts.scatter_add_(0, bins, torch.ones_like(bins))[:num_classes]

    area_intersect = histogram(pred_label, keep & (pred_label == label))
    area_pred_label = histogram(pred_label, keep)
    area_label = histogram(label, keep)
    area_union = area_pred_label + area_label - area_intersect
    return area_intersect, area_union, area_pred_label, area_label


def format_table(columns: dict[str, Sequence[Any]]) -> str:
    """A bordered text table with centred cells, laid out as PrettyTable's default."""
    headers = list(columns)
    cells = [[str(x) for x in columns[h]] for h in headers]
    widths = [max([len(h), *map(len, col)]) for h, col in zip(headers, cells)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(texts: Sequence[str]) -> str:
        return "|" + "|".join(f" {_centre(t, w)} " for t, w in zip(texts, widths)) + "|"

    rows = [line(row) for row in zip(*cells)]
    return "\n".join([rule, line(headers), rule, *rows, rule])


def _centre(text: str, width: int) -> str:
    # An odd leftover space goes right of odd-length text and left of even-length text.
    excess = width - len(text)
    left = excess // 2 + (1 if excess % 2 and len(text) % 2 == 0 else 0)
    return " " * left + text + " " * (excess - left)
