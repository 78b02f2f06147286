"""IoUMetric against hand-computed histograms, as MMSegmentation computes them."""

import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from vistra.config import ConfigError
from vistra.data.structures import DataSample, PixelData
from vistra.evaluation import Evaluator, IoUMetric
from vistra.evaluation.metrics.iou import format_table
from vistra.registry import METRICS

CLASSES = ("a", "b", "c")
# Pixels kept (label != 255): a/a twice, b->a once, b/b twice; class c absent from both.
PRED_1 = [[0, 0, 1], [1, 1, 0]]
GT_1 = [[0, 1, 1], [255, 1, 0]]
# Adds a/a once, a->c once, c/c once (the pixel under 255 predicts b and is not counted).
PRED_2 = [[2, 2], [0, 1]]
GT_2 = [[2, 0], [0, 255]]


def F32(x: float) -> float:
    """The number MMSegmentation returns for a 2-decimal percentage: a float32 (66.67 is
    66.66999816894531 as a Python float), which the log prints as 66.6700."""
    return float(np.float32(x))


def seg_sample(pred, gt=None, **metainfo):
    sample = {"pred_sem_seg": {"data": torch.tensor(pred)[None]}, **metainfo}
    if gt is not None:
        sample["gt_sem_seg"] = {"data": torch.tensor(gt, dtype=torch.uint8)[None]}
    return sample


def make_metric(**kwargs):
    metric = IoUMetric(**kwargs)
    metric.dataset_meta = {"classes": CLASSES}
    return metric


def test_histograms_kept_per_image_not_masks():
    metric = make_metric()
    metric.process(
        None,
        [
            seg_sample(PRED_1, GT_1),
            seg_sample(np.zeros((64, 64), int).tolist(), np.zeros((64, 64), int).tolist()),
        ],
    )
    assert len(metric.results) == 2
    inter, union, pred, label = metric.results[0]
    assert (inter.tolist(), union.tolist(), pred.tolist(), label.tolist()) == (
        [2, 2, 0],
        [3, 3, 0],
        [3, 2, 0],
        [2, 3, 0],
    )
    assert all(area.shape == (3,) for area in metric.results[1])


def test_absent_class_is_nan_and_left_out_of_the_mean():
    metric = make_metric(iou_metrics=["mIoU", "mDice", "mFscore"])
    metric.process(None, [seg_sample(PRED_1, GT_1)])
    out = metric.evaluate(1)
    assert list(out) == ["aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision", "mRecall"]
    assert out == {
        "aAcc": 80.0,
        "mIoU": F32(66.67),
        "mAcc": F32(83.33),
        "mDice": 80.0,
        "mFscore": 80.0,
        "mPrecision": F32(83.33),
        "mRecall": F32(83.33),
    }
    per_class = metric.classwise_results
    assert list(per_class) == ["IoU", "Acc", "Dice", "Fscore", "Precision", "Recall"]
    assert per_class["IoU"]["a"] == F32(66.67) and per_class["Acc"]["a"] == 100.0
    assert per_class["Acc"]["b"] == F32(66.67) and math.isnan(per_class["IoU"]["c"])


def test_nan_to_num_fills_absent_classes_before_the_mean():
    metric = make_metric(nan_to_num=0)
    metric.process(None, [seg_sample(PRED_1, GT_1)])
    out = metric.evaluate(1)
    assert out == {"aAcc": 80.0, "mIoU": F32(44.44), "mAcc": F32(55.56)}
    assert metric.classwise_results["IoU"]["c"] == 0.0


def test_beta_weighs_recall():
    metric = make_metric(iou_metrics="mFscore", beta=2)
    metric.process(None, [seg_sample(PRED_1, GT_1)])
    # F2 per class: 10/11 and 10/14
    assert metric.evaluate(1)["mFscore"] == F32(round((10 / 11 + 10 / 14) / 2 * 100, 2))


def test_histograms_are_summed_over_images_before_ratios():
    metric = make_metric()
    metric.process(None, [seg_sample(PRED_1, GT_1)])
    metric.process(None, [seg_sample(PRED_2, GT_2)])
    out = metric.evaluate(2)
    # totals: intersect [3, 2, 1], union [5, 3, 2], label [4, 3, 1]
    assert out == {
        "aAcc": 75.0,
        "mIoU": F32(round((3 / 5 + 2 / 3 + 1 / 2) / 3 * 100, 2)),
        "mAcc": F32(round((3 / 4 + 2 / 3 + 1) / 3 * 100, 2)),
    }
    assert metric.results == []  # cleared for the next evaluation


def test_per_class_table_is_logged(caplog):
    caplog.set_level(logging.INFO, logger="vistra.evaluation.metrics.iou")
    metric = make_metric()
    metric.process(None, [seg_sample(PRED_1, GT_1)])
    metric.evaluate(1)
    assert "per class results:" in caplog.text
    assert metric.class_table in caplog.text
    lines = metric.class_table.splitlines()
    assert lines[1] == "| Class |  IoU  |  Acc  |"
    assert lines[3] == "|   a   | 66.67 | 100.0 |"
    assert lines[5] == "|   c   |  nan  |  nan  |"


def test_format_table_centres_like_prettytable():
    table = format_table({"Class": ["a", "bb"], "IoU": ["66.67", "nan"]})
    assert table.splitlines() == [
        "+-------+-------+",
        "| Class |  IoU  |",
        "+-------+-------+",
        "|   a   | 66.67 |",
        "|   bb  |  nan  |",
        "+-------+-------+",
    ]


def test_output_dir_writes_pngs_shifted_by_reduce_zero_label(tmp_path):
    metric = make_metric(output_dir=str(tmp_path / "preds"))
    metric.process(
        None,
        [
            seg_sample(PRED_1, GT_1, img_path="/data/img/x_001.jpg", reduce_zero_label=True),
            seg_sample(PRED_2, GT_2, img_path="/data/img/x_002.jpg", reduce_zero_label=False),
        ],
    )
    np.testing.assert_array_equal(
        np.array(Image.open(tmp_path / "preds" / "x_001.png")), np.array(PRED_1) + 1
    )
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "preds" / "x_002.png")), PRED_2)
    assert metric.evaluate(2)["aAcc"] == 75.0  # still scored without format_only


def test_format_only_needs_no_labels_and_returns_no_metrics(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vistra.evaluation.metrics.iou")
    metric = make_metric(output_dir=str(tmp_path), format_only=True)
    metric.process(None, [seg_sample(PRED_2, img_path="b/test_7.png")])
    assert metric.results == []
    assert metric.evaluate(1) == {}
    assert (tmp_path / "test_7.png").exists()
    assert f"results are saved to {tmp_path}" in caplog.text
    with pytest.raises(ConfigError, match="needs output_dir"):  # one line in the CLI
        IoUMetric(format_only=True)


def test_errors_name_the_missing_piece():
    with pytest.raises(ValueError, match="did you mean 'mDice'"):
        IoUMetric(iou_metrics=["mdice"])
    with pytest.raises(KeyError, match=r"dataset_meta\['classes'\]"):
        IoUMetric().process(None, [seg_sample(PRED_1, GT_1)])


def test_through_evaluator_with_datasamples_and_registry():
    metric = METRICS.build({"type": "mmseg.IoUMetric", "iou_metrics": ["mIoU", "mDice"]})
    evaluator = Evaluator(metric)
    evaluator.dataset_meta = {"classes": CLASSES}
    assert metric.dataset_meta == {"classes": CLASSES}
    sample = DataSample(
        pred_sem_seg=PixelData(torch.tensor(PRED_1)), gt_sem_seg=PixelData(torch.tensor(GT_1))
    )
    evaluator.process([sample])
    expected = {"aAcc": 80.0, "mIoU": F32(66.67), "mAcc": F32(83.33), "mDice": 80.0}
    assert evaluator.evaluate(1) == expected


def test_rounding_tie_prints_as_mmsegmentation_float32():
    # class a: 93 of 160 pixels right, IoU = Acc = 58.125 %. MMSegmentation divides the
    # float32 histograms and rounds with np.round(x * 100, 2) in float32: 58.12 (float64
    # arithmetic gives 58.13). The table, the per-class values and the mean all follow it.
    gt = [[0] * 160 + [1] * 40]
    pred = [[0] * 93 + [1] * 107]
    metric = IoUMetric()
    metric.dataset_meta = {"classes": ("a", "b")}
    metric.process(None, [seg_sample(pred, gt)])
    out = metric.evaluate(1)
    assert metric.classwise_results["IoU"]["a"] == F32(58.12)
    assert metric.classwise_results["Acc"]["a"] == F32(58.12)
    assert "| 58.12 |" in metric.class_table and "58.13" not in metric.class_table
    assert out["aAcc"] == F32(66.5)  # (93 + 40) / 200
    assert str(np.float32(out["mAcc"])) == str(np.round(np.float32((93 / 160 + 1) / 2) * 100, 2))


def test_totals_are_float32_sums_in_image_order():
    from vistra.evaluation.functional import sum_areas

    big = torch.tensor([2**24], dtype=torch.int64)
    total = sum_areas([big, torch.tensor([1]), torch.tensor([1])])
    assert total.dtype == torch.float32 and total.item() == 2**24  # as float32 adds them
