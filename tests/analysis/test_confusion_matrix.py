"""``vistra confusion-matrix`` / ``tools/analysis_tools/confusion_matrix.py`` on the trained
quickstart classifier and segmenter: the matrix against counts made here from what
``vistra test --out`` wrote, the CSV/PNG/JSON files, the checkpoint route, and errors."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_support import REPO, Result, run_cli
from PIL import Image
from trained_tiny import trained_classifier, trained_segmenter

from vistra.analysis.confusion import classification_confusion
from vistra.analysis.predictions import Prediction, load_predictions, load_records
from vistra.cli.confusion_matrix import main
from vistra.config import Config
from vistra.data.errors import DataError
from vistra.registry import DATASETS


def run_script(script: str, *args: object, cwd: Path) -> Result:
    """``python tools/analysis_tools/SCRIPT ARGS``: the upstream-named wrapper."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1")
    cmd = [sys.executable, str(REPO / "tools" / "analysis_tools" / script), *map(str, args)]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return Result(done.returncode, done.stdout, done.stderr)


def read_csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    rows = list(csv.reader(path.read_text().splitlines()))
    header, body = rows[0], rows[1:]
    return header[1:], [r[0] for r in body], np.array([[int(v) for v in r[1:]] for r in body])


@pytest.fixture(scope="module")
def cls_preds(tmp_path_factory) -> tuple[object, Path]:
    model = trained_classifier()
    root = tmp_path_factory.mktemp("cm-cls")
    out = root / "preds.pkl"
    done = run_cli("test", model.config, model.checkpoint, "--work-dir", root / "w", "--out", out,
                   cwd=root)  # fmt: skip
    assert done.returncode == 0, done.output
    return model, out


@pytest.fixture(scope="module")
def seg_preds(tmp_path_factory) -> tuple[object, Path, Path]:
    model = trained_segmenter()
    root = tmp_path_factory.mktemp("cm-seg")
    out = root / "pred_png"
    done = run_cli("test", model.config, model.checkpoint, "--work-dir", root / "w", "--out", out,
                   cwd=root)  # fmt: skip
    assert done.returncode == 0, done.output
    return model, out, root / "w"


def counts_from_pickle(path: Path, num_classes: int) -> np.ndarray:
    """MMPretrain's rule, counted by hand: arg-max of the scores against the label."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for record in pickle.loads(path.read_bytes()):
        matrix[record["gt_label"], int(np.argmax(record["pred_score"]))] += 1
    return matrix


@pytest.mark.slow
def test_checkpoint_runs_the_test_set_first(cls_preds, tmp_path):
    model, preds = cls_preds
    save = tmp_path / "save"
    done = run_script("confusion_matrix.py", model.config, model.checkpoint, save,
                      "--include-values", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.output
    expected = counts_from_pickle(preds, 6)
    assert expected.sum() == 24
    columns, rows, matrix = read_csv(save / "confusion_matrix.csv")
    assert columns == rows == ["circle", "square", "triangle", "star", "cross", "ring"]
    np.testing.assert_array_equal(matrix, expected)
    with Image.open(save / "confusion_matrix.png") as image:
        assert image.format == "PNG" and min(image.size) > 300
    assert "rows: true, columns: predicted" in done.stdout
    assert not (tmp_path / "work_dirs").exists()  # the test run's log went to a temp folder


def test_result_file_matrix_csv_png_json(cls_preds, tmp_path, capsys):
    model, preds = cls_preds
    out = [str(tmp_path / n) for n in ("m.csv", "m.png", "m.json")]
    argv = [str(model.config), str(preds), "--out-csv", out[0], "--show-path", out[1]]
    assert main([*argv, "--out", out[2]]) == 0
    expected = counts_from_pickle(preds, 6)
    np.testing.assert_array_equal(read_csv(Path(out[0]))[2], expected)
    assert json.loads(Path(out[2]).read_text()) == expected.tolist()
    assert Image.open(out[1]).format == "PNG"
    printed = capsys.readouterr().out  # the table is printed too
    assert "confusion matrix of 24 predictions" in printed and "triangle" in printed


def test_segmentation_matrix_from_prediction_pngs(seg_preds, tmp_path):
    model, pred_dir, work = seg_preds
    save = tmp_path / "save"
    assert main([str(model.config), str(pred_dir), str(save), "--title", "shapes"]) == 0
    names, _, matrix = read_csv(save / "confusion_matrix.csv")
    assert names[0] == "background" and len(names) == 7
    # counted here: the rendered ground truth against each PNG, by sample name
    cfg = Config.fromfile(model.config)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    expected = np.zeros((7, 7), np.int64)
    for i in range(len(dataset)):
        gt = dataset.get_data_info(i)["gt_seg_map"].astype(np.int64)
        pred = np.asarray(Image.open(pred_dir / f"{i:06d}.png")).astype(np.int64)
        keep = gt != 255
        expected += np.bincount(gt[keep] * 7 + pred[keep], minlength=49).reshape(7, 7)
    np.testing.assert_array_equal(matrix, expected)
    # and it agrees with what IoUMetric reported for the same predictions
    metrics = json.loads(next(work.glob("*/*.json")).read_text())
    assert metrics["aAcc"] == pytest.approx(100 * np.trace(matrix) / matrix.sum(), abs=0.01)
    with Image.open(save / "confusion_matrix.png") as image:
        assert image.format == "PNG"


def test_seg_prediction_folder_missing_a_file(seg_preds, tmp_path, capsys):
    model, pred_dir, _ = seg_preds
    partial = tmp_path / "partial"
    partial.mkdir()
    for png in sorted(pred_dir.glob("*.png"))[1:]:
        (partial / png.name).write_bytes(png.read_bytes())
    assert main([str(model.config), str(partial), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "1 of the 24 test samples have no prediction" in err
    assert "000000.png" in err and not (tmp_path / "out").exists()
    assert main([str(model.config), str(partial)]) == 2
    assert "give SAVE_DIR too" in capsys.readouterr().err


def test_matrix_follows_mmpretrain_rule():
    # MMPretrain's docstring example: y_pred [0, 1, 1, 3], y_true [0, 2, 1, 3]
    preds = [
        Prediction(i, i, t, p, None) for i, (p, t) in enumerate(zip([0, 1, 1, 3], [0, 2, 1, 3]))
    ]
    expected = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert classification_confusion(preds, 4).tolist() == expected
    # with scores the arg-max counts, not pred_label (a thresholded label may differ)
    scored = Prediction(0, 0, 1, 0, np.array([0.2, 0.5, 0.3]))
    assert classification_confusion([scored]).tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    with pytest.raises(DataError, match="labels must lie in"):
        classification_confusion([Prediction(0, 0, 7, 0, None)], 4)


def test_results_pickle_is_loaded_safely(tmp_path):
    # MMPretrain's own dumps hold tensors: they load; anything that could run code does not
    upstream_style = [{"sample_idx": 0, "gt_label": torch.tensor([2]),
                       "pred_label": torch.tensor([1]), "pred_score": torch.tensor([0.1, 0.7, 0.2])}]  # fmt: skip
    (tmp_path / "up.pkl").write_bytes(pickle.dumps(upstream_style))
    (p,) = load_predictions(tmp_path / "up.pkl")
    assert (p.gt_label, p.pred_label, p.sample_idx) == (2, 1, 0)
    assert p.score == pytest.approx(0.7)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([{"gt_label": Evil()}]))
    with pytest.raises(DataError, match=r"holds a (posix|os)\.system object"):
        load_records(tmp_path / "evil.pkl")
    assert not (tmp_path / "pwned").exists()


def test_bad_results_files_give_one_line(tmp_path, capsys):
    config = REPO / "configs" / "quickstart" / "cls_shapes.py"
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"accuracy/top1": 50.0}))
    seg = tmp_path / "seg.json"
    seg.write_text(json.dumps([{"sample_idx": 0, "seg_map_path": "a.png"}]))
    cases = [
        (metrics, "--out-item metrics"),
        (seg, "look like segmentation results"),
        (tmp_path / "missing.pkl", "predictions file not found"),
    ]
    for path, message in cases:
        assert main([str(config), str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and err.count("\n") == 0 and message in err, err


def test_bad_cmap_names_the_close_one(cls_preds, tmp_path, capsys):
    model, preds = cls_preds
    assert main([str(model.config), str(preds), "--show-path", str(tmp_path / "x.png"),
                 "--cmap", "viridiss"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "unknown colour map 'viridiss'" in err and "viridis" in err
    assert not (tmp_path / "x.png").exists()


def test_csv_quotes_class_names():
    from vistra.analysis.confusion import matrix_csv

    text = matrix_csv(np.array([[1, 2], [3, 4]]), ["a,b", 'say "hi"'])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["gt \\ pred", "a,b", 'say "hi"'] and rows[2] == ['say "hi"', "3", "4"]


def test_seg_reduce_zero_label_counts_in_model_labels(tmp_path):
    from vistra.analysis.seg_confusion import segmentation_confusion

    # on disk: label 0 means "other" (ignored), 1..3 are the model's classes 0..2
    rng = np.random.default_rng(0)
    for folder in ("img_dir", "ann_dir", "pred"):
        (tmp_path / folder).mkdir()
    expected = np.zeros((3, 3), np.int64)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
            tmp_path / "img_dir" / f"im{i}.png"
        )
        on_disk = rng.integers(0, 4, (8, 8)).astype(np.uint8)
        model = rng.integers(0, 3, (8, 8))
        Image.fromarray(on_disk).save(tmp_path / "ann_dir" / f"im{i}.png")
        # IoUMetric writes the file's own indices: the model's label + 1
        Image.fromarray((model + 1).astype(np.uint8)).save(tmp_path / "pred" / f"im{i}.png")
        keep = on_disk > 0
        np.add.at(expected, (on_disk[keep].astype(int) - 1, model[keep]), 1)
    dataset = DATASETS.build(
        dict(
            type="BaseSegDataset",
            data_root=str(tmp_path),
            data_prefix=dict(img_path="img_dir", seg_map_path="ann_dir"),
            img_suffix=".png",
            reduce_zero_label=True,
            metainfo=dict(classes=("a", "b", "c")),
            test_mode=True,
            pipeline=[
                dict(type="LoadImageFromFile"),
                dict(type="LoadAnnotations"),
                dict(type="PackSegInputs"),
            ],  # fmt: skip
        )
    )
    matrix = segmentation_confusion(dataset, tmp_path / "pred", 3)
    np.testing.assert_array_equal(matrix, expected)


ORACLE_CM = """
import json, sys, torch
from mmpretrain.evaluation import ConfusionMatrix
records = json.load(open(sys.argv[1]))
scores = torch.tensor([r["pred_score"] for r in records])
labels = torch.tensor([r["gt_label"] for r in records])
print(json.dumps(ConfusionMatrix.calculate(scores, labels).tolist()))
"""


@pytest.mark.upstream
@pytest.mark.skipif(
    os.environ.get("VISTRA_UPSTREAM_FULL", "") in ("", "0"),
    reason="MMPretrain's own ConfusionMatrix is compared under VISTRA_UPSTREAM_FULL=1 "
    "(importing it takes seconds); the default suite checks its rule by hand",
)
def test_matrix_equals_mmpretrain_confusion_matrix(cls_preds, tmp_path, capsys):
    from oracle_support import oracle_env

    model, preds = cls_preds
    records = pickle.loads(preds.read_bytes())
    (tmp_path / "records.json").write_text(json.dumps(records))
    done = subprocess.run([sys.executable, "-c", ORACLE_CM, str(tmp_path / "records.json")],
                          capture_output=True, text=True, env=oracle_env(), timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([str(model.config), str(preds), "--out-csv", str(tmp_path / "m.csv")]) == 0
    assert read_csv(tmp_path / "m.csv")[2].tolist() == json.loads(done.stdout)
