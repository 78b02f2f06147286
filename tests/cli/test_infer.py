"""`vistra infer`: the real command on the quickstart models agrees with `vistra test`;
bad input is one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from e2e_support import REPO, run_cli
from infer_reference import cls_reference, seg_reference
from PIL import Image

from vistra.cli.infer import main

pytestmark = pytest.mark.slow  # trains the quickstart models and runs `vistra test`


def test_classification_folder_with_out_dir(tmp_path):
    ref = cls_reference()
    folder = ref.images[0].parents[1]
    out = tmp_path / "out"
    result = run_cli("infer", ref.model.config, ref.model.checkpoint, folder,
                     "--out-dir", out, "--batch-size", "2", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = json.loads((out / "predictions.json").read_text())
    assert records["task"] == "classification"
    predictions = records["predictions"]
    assert [r["image"] for r in predictions] == [str(p) for p in ref.images]
    for path, r in zip(ref.images, predictions):
        assert r["pred_label"] == ref.labels[str(path)]
        np.testing.assert_allclose(r["pred_scores"], ref.scores[str(path)], atol=1e-5)
        assert (out / "vis" / f"{path.stem}.png").is_file()
        assert r["pred_class"] in result.stdout
    assert f"{len(ref.images)} image(s)" in result.stdout and result.stderr == ""


def test_segmentation_files_with_out_dir(tmp_path):
    ref = seg_reference()
    out = tmp_path / "out"
    images = ref.images[:2]
    result = run_cli("infer", ref.model.config, ref.model.checkpoint, *images,
                     "--out-dir", out, "--show", cwd=tmp_path,
                     env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: cannot show images (no DISPLAY or WAYLAND_DISPLAY is set); continuing without"
    ]
    predictions = json.loads((out / "predictions.json").read_text())["predictions"]
    classes = ("background", "circle", "square", "triangle", "star", "cross", "ring")
    for path, r in zip(images, predictions):
        mask = np.asarray(Image.open(out / r["pred_file"]))
        np.testing.assert_array_equal(mask, ref.masks[path.stem])
        values, counts = np.unique(mask, return_counts=True)
        expected = {classes[v]: c / mask.size for v, c in zip(values, counts)}
        assert r["classes"] == pytest.approx(expected)
        assert (out / "vis" / f"{path.stem}.png").is_file()
        assert next(iter(r["classes"])) in result.stdout


def _error(capsys, *argv) -> str:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_bad_input_is_one_error_line(tmp_path, capsys):
    ref = cls_reference()
    cfg, ckpt, image = ref.model.config, ref.model.checkpoint, ref.images[0]
    assert "input image not found: " in _error(capsys, cfg, ckpt, tmp_path / "no.png")
    (tmp_path / "a.txt").write_text("x")
    assert "is not an image file" in _error(capsys, cfg, ckpt, tmp_path / "a.txt")
    assert "unknown device 'gpu0'" in _error(capsys, cfg, ckpt, image, "--device", "gpu0")
    assert "--batch-size must be at least 1" in _error(
        capsys, cfg, ckpt, image, "--batch-size", "0"
    )
    seg_cfg = REPO / "configs/quickstart/seg_shapes.py"
    assert "model weights unset" in _error(capsys, seg_cfg, ckpt, image)
    assert "checkpoint file not found" in _error(capsys, cfg, tmp_path / "x.pth", image)
    assert "did you mean '--out-dir'" in _error(capsys, cfg, ckpt, image, "--outdir", "x")
