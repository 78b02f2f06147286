"""demo/image_demo.py takes MMPretrain's and MMSegmentation's command forms."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from e2e_support import REPO
from infer_reference import cls_reference, seg_reference
from PIL import Image

from vistra.data.image_io import imread, swap_rb
from vistra.visualization.drawing import overlay_sem_seg

DEMO = REPO / "demo" / "image_demo.py"

pytestmark = pytest.mark.slow


def _demo(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DEMO), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"),
    )  # fmt: skip


def test_mmpretrain_form_prints_the_prediction_as_json(tmp_path):
    ref = cls_reference()
    image = ref.images[1]
    done = _demo(image, ref.model.config, "--checkpoint", ref.model.checkpoint,
                 "--show-dir", tmp_path / "vis", "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["pred_label"] == ref.labels[str(image)]
    assert result["pred_score"] == pytest.approx(float(ref.scores[str(image)].max()), abs=1e-5)
    assert result["pred_class"] and (tmp_path / "vis" / f"{image.stem}.png").is_file()


def test_mmseg_form_writes_the_overlay(tmp_path):
    ref = seg_reference()
    image = ref.images[0]
    out = tmp_path / "result.png"
    done = _demo(image, ref.model.config, ref.model.checkpoint, "--out-file", out,
                 "--opacity", "0.5", "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    from vistra.data.datasets.shapes import PALETTE

    palette = np.asarray(PALETTE[:7], dtype=np.uint8)
    expected = overlay_sem_seg(
        swap_rb(imread(image)), ref.masks[image.stem].astype(int), palette, 0.5
    )
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)


def test_a_checkpoint_given_twice_is_one_error_line(capsys):
    spec = importlib.util.spec_from_file_location("image_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(["a.png", "cfg.py", "a.pth", "--checkpoint", "b.pth"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: give the checkpoint once: as the third argument or as --checkpoint"]
