"""``vistra analyze-results`` / ``tools/analysis_tools/analyze_results.py`` on the trained
quickstart classifier's ``vistra test --out preds.json``: the success/fail split and order
against the predictions, the drawn images, the listings, and the mismatch errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e_support import REPO, run_cli
from PIL import Image
from trained_tiny import trained_classifier

from vistra.analysis.predictions import Prediction
from vistra.analysis.results import split_success_fail
from vistra.cli.analyze_results import main


@pytest.fixture(scope="module")
def cls_preds(tmp_path_factory) -> tuple[object, Path]:
    model = trained_classifier()
    root = tmp_path_factory.mktemp("ar-cls")
    out = root / "preds.json"  # the JSON form (the confusion-matrix tests read the pickle)
    done = run_cli("test", model.config, model.checkpoint, "--work-dir", root / "w", "--out", out,
                   cwd=root)  # fmt: skip
    assert done.returncode == 0, done.output
    return model, out


def expected_split(records: list[dict], topk: int) -> tuple[list[int], list[int]]:
    """Most confident first; ties keep the file's order (a stable sort)."""
    ordered = sorted(records, key=lambda r: -max(r["pred_score"]))
    right = [r["sample_idx"] for r in ordered if r["pred_label"] == r["gt_label"]]
    wrong = [r["sample_idx"] for r in ordered if r["pred_label"] != r["gt_label"]]
    return right[:topk], wrong[:topk]


def test_upstream_script_has_mmpretrain_flags():
    script = REPO / "tools" / "analysis_tools" / "analyze_results.py"
    done = subprocess.run([sys.executable, str(script), "-h"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for flag in ("--out-dir", "--topk", "--rescale-factor", "--cfg-options"):
        assert flag in done.stdout


def test_success_and_fail_folders(cls_preds, tmp_path, capsys):
    model, preds = cls_preds
    records = json.loads(preds.read_text())
    out = tmp_path / "out"
    assert main([str(model.config), str(preds), "--out-dir", str(out), "--topk", "4"]) == 0
    right, wrong = expected_split(records, 4)
    assert len(right) + len(wrong) > 0
    for folder, indices in (("success", right), ("fail", wrong)):
        listing = json.loads((out / folder / f"{folder}.json").read_text())
        assert [e["sample_idx"] for e in listing] == indices
        assert sorted(p.name for p in (out / folder).glob("*.png")) == sorted(
            f"{i}.png" for i in indices
        )
        scores = [e["score"] for e in listing]
        assert scores == sorted(scores, reverse=True)
        for entry in listing:
            record = records[entry["sample_idx"]]
            assert (entry["gt_label"], entry["pred_label"]) == (
                record["gt_label"],
                record["pred_label"],
            )
            assert (entry["pred_label"] == entry["gt_label"]) == (folder == "success")
            with Image.open(out / folder / entry["file"]) as image:
                # 64 px test images, enlarged to draw_classification's readable 224 px
                assert image.size == (224, 224) and image.mode == "RGB"
    n_right = sum(r["pred_label"] == r["gt_label"] for r in records)
    assert f"{len(records)} predictions: {n_right} correct" in capsys.readouterr().out


def test_drawn_image_is_the_test_sample(cls_preds, tmp_path):
    from vistra.config import Config
    from vistra.registry import DATASETS

    model, preds = cls_preds
    assert main([str(model.config), str(preds), "--out-dir", str(tmp_path), "--topk", "1",
                 "-r", "4"]) == 0  # fmt: skip
    listing = json.loads((tmp_path / "fail" / "fail.json").read_text())
    drawn = np.asarray(Image.open(tmp_path / "fail" / listing[0]["file"])).astype(int)
    assert drawn.shape == (256, 256, 3)  # 64 px x 4: already readable, not enlarged further
    cfg = Config.fromfile(model.config)
    dataset = DATASETS.build({**cfg.test_dataloader.dataset, "pipeline": []})
    bgr = dataset.get_data_info(listing[0]["sample_idx"])["img"]
    rgb = np.asarray(Image.fromarray(bgr[:, :, ::-1].copy()).resize((256, 256), Image.BILINEAR))
    # away from the text box in the top-left corner, the picture is the sample, in RGB
    assert np.abs(drawn[128:, 128:] - rgb[128:, 128:].astype(int)).mean() < 2


def test_predictions_of_other_data_are_refused(cls_preds, tmp_path, capsys):
    model, preds = cls_preds
    # another seed: the same number of samples, other images and labels
    argv = [str(model.config), str(preds), "--out-dir", str(tmp_path)]
    assert main([*argv, "--cfg-options", "test_dataloader.dataset.seed=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the predictions were made on other data" in err
    assert main([*argv, "--cfg-options", "test_dataloader.dataset.num_samples=4"]) == 2
    assert "test set has 4 samples" in capsys.readouterr().err
    assert main([*argv, "--topk", "0"]) == 2
    assert "--topk must be > 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_split_orders_by_confidence():
    def pred(i: int, gt: int, label: int, top: float | None) -> Prediction:
        score = None if top is None else np.array([top, 1 - top])
        return Prediction(i, i, gt, label, score)

    preds = [pred(0, 0, 0, 0.6), pred(1, 0, 1, 0.9), pred(2, 1, 1, 0.8), pred(3, 0, 0, 0.95),
             pred(4, 1, 0, 0.55), pred(5, 0, 0, None)]  # fmt: skip
    success, fail = split_success_fail(preds, topk=2)
    assert [p.position for p in success] == [3, 2] and [p.position for p in fail] == [1, 4]
    success, _ = split_success_fail(preds, topk=10)
    assert [p.position for p in success] == [3, 2, 0, 5]  # no score: last
