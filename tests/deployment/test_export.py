"""``vistra export``: the quickstart classifier and segmenter, trained for real
(tests/helpers/trained_tiny.py), exported to ONNX, torch.export, TorchScript and
safetensors, and each artefact run back by its own runtime against PyTorch."""

from __future__ import annotations

import functools
import json
import sys
import warnings

import numpy as np
import pytest
import torch
from e2e_support import REPO
from trained_tiny import trained_classifier, trained_segmenter

from vistra.cli.export import main as export_main
from vistra.config import Config
from vistra.deployment import ExportError, ExportOptions, ExportWrapper, export, load_model
from vistra.deployment.verify import compare

ATOL = 1e-4


@functools.cache
def _load(trained):
    """The trained model, built and loaded once per test process (exports do not change it)."""
    return load_model(Config.fromfile(str(trained.config)), trained.checkpoint)


def _only_file(folder):
    """The folder holds one file: no temporary file was left behind."""
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 1, files
    return folder / files[0]


def test_onnx_classifier_runs_in_onnxruntime_with_a_dynamic_batch(tmp_path, capsys):
    import onnxruntime

    trained = trained_classifier()
    out = tmp_path / "cls.onnx"
    code = export_main([
        str(trained.config), str(trained.checkpoint), "--format", "onnx", "--dynamic-batch",
        "--out", str(out),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "input 1x3x64x64" in printed  # the config's test size, as no --shape was given
    assert printed.count("max abs diff") == 2  # batch 1 and, as it is dynamic, batch 2
    assert _only_file(tmp_path) == out
    # run the file the way a deployment does, on a batch size the export never saw
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = torch.randn(5, 3, 64, 64)
    (scores,) = session.run(None, {"input": images.numpy()})
    loaded = _load(trained)
    with torch.no_grad():  # the head's own predict: softmax scores
        expected = torch.stack([s.pred_score for s in loaded.model.predict(images)])
    assert scores.shape == (5, 6)
    assert np.abs(scores - expected.numpy()).max() < ATOL
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def test_onnx_segmenter_logits_at_input_size(tmp_path):
    import onnxruntime

    loaded = _load(trained_segmenter())
    opts = ExportOptions("onnx", (64, 64), batch=2, optimize=False)
    out = export(loaded, opts, tmp_path / "seg.onnx", "seg")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = torch.randn(2, 3, 64, 64)
    (logits,) = session.run(None, {"input": images.numpy()})
    assert logits.shape == (2, 7, 64, 64)  # 7 classes, upsampled from the head's 1/4 size
    with torch.no_grad():  # the segmentor's own predict resizes the same way
        predicted = loaded.model.predict(images)
    expected = torch.stack([s.seg_logits.data for s in predicted])
    assert np.abs(logits - expected.numpy()).max() < ATOL


def test_exported_program_dynamic_batch_and_size(tmp_path):
    loaded = _load(trained_classifier())
    opts = ExportOptions(
        "exported-program", (64, 64), dynamic_batch=True, dynamic_shape=True, output="logits"
    )
    out = export(loaded, opts, tmp_path / "cls.pt2", "cls")
    program = torch.export.load(str(out)).module()
    images = torch.randn(3, 3, 96, 128)  # neither the batch nor the size it was traced with
    with torch.no_grad():
        expected = loaded.model(images, mode="tensor")
        assert (program(images) - expected).abs().max().item() < ATOL


def test_exported_segmenter_and_a_dynamic_size_it_cannot_have(tmp_path, capsys):
    trained = trained_segmenter()
    loaded = _load(trained)
    out = export(
        loaded, ExportOptions("exported-program", (64, 64), dynamic_batch=True),
        tmp_path / "seg.pt2", "seg",
    )  # fmt: skip
    program = torch.export.load(str(out)).module()
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = torch.stack([s.seg_logits.data for s in loaded.model.predict(images)])
        assert (program(images) - expected).abs().max().item() < ATOL
    # DeepLabV3+ resizes to sizes computed in Python: a dynamic H/W cannot hold, the
    # verification on a second size says so and the earlier file is kept as it was
    before = out.read_bytes()
    code = export_main([
        str(trained.config), str(trained.checkpoint), "--format", "exported-program",
        "--dynamic-shape", "--out", str(out),
    ])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: the exported program fails"), err
    assert "(1, 3, 96, 96)" in err[0] and "without --dynamic-shape" in err[0]
    assert out.read_bytes() == before
    assert _only_file(tmp_path) == out


def test_torchscript_with_preprocess_matches_the_model_pipeline(tmp_path, capsys):
    """The graph takes uint8 BGR pixels and normalises them as the config's data
    preprocessor does (BGR->RGB flip, mean/std); compared with the model's own pipeline."""
    trained = trained_classifier()
    out = tmp_path / "cls.pt"
    code = export_main([
        str(trained.config), str(trained.checkpoint), "--format", "torchscript",
        "--with-preprocess", "--shape", "48", "--batch", "2", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    assert "input 2x3x48x48" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        module = torch.jit.load(str(out))
    pixels = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)
    loaded = _load(trained)
    with torch.no_grad():
        batch = loaded.model.data_preprocessor({"inputs": list(pixels)})
        expected = torch.stack([s.pred_score for s in loaded.model.predict(batch["inputs"])])
        assert (module(pixels) - expected).abs().max().item() < ATOL


@pytest.mark.slow
def test_tools_script_has_the_cli_flags_and_one_line_errors(tmp_path):
    """``python tools/deployment/export.py`` in a real process: a flag that cannot work is
    one line and exit status 2, before any model is built."""
    import subprocess

    cfg = REPO / "configs/quickstart/cls_shapes.py"
    done = subprocess.run(
        [sys.executable, str(REPO / "tools/deployment/export.py"), str(cfg),
         str(tmp_path / "x.pth"), "--format", "torchscript", "--opset", "17"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == "error: --opset is for --format onnx, not torchscript"
    assert list(tmp_path.iterdir()) == []


def test_safetensors_holds_the_checkpoint_weights_and_loads_back(tmp_path, capsys):
    """The export's verification loads the file through vistra's checkpoint loader (what
    ``load_from`` and ``vistra test`` use) into a fresh model and compares outputs."""
    from safetensors import safe_open

    trained = trained_classifier()
    out = tmp_path / "cls.safetensors"
    args = [str(trained.config), str(trained.checkpoint), "--format", "safetensors"]
    assert export_main([*args, "--out", str(out)]) == 0
    assert "verify safetensors input (1, 3, 64, 64)" in capsys.readouterr().out
    saved = torch.load(trained.checkpoint, weights_only=True)["state_dict"]
    with safe_open(str(out), "pt") as f:
        assert set(f.keys()) == set(saved)  # upstream key names, nothing else
        assert all(torch.equal(f.get_tensor(k), saved[k]) for k in saved)
        meta = f.metadata()
    assert meta["config"] == trained.config.stem and meta["vistra_version"]
    classes = ["circle", "square", "triangle", "star", "cross", "ring"]  # ShapesDataset's
    assert json.loads(meta["classes"]) == classes
    again = load_model(Config.fromfile(str(trained.config)), out)
    assert all(torch.equal(again.state_dict[k], saved[k]) for k in saved)


def test_compare_tolerance_and_near_ties():
    x = torch.zeros(1, 3, 2, 2)
    assert compare(x, torch.zeros(2), torch.full((2,), 0.5), None, ATOL).max_abs_diff == 0.5
    logits = torch.tensor([[[[1.0, 2.0]], [[1.0 + 1e-6, 0.0]]]])  # pixel 0: a near tie
    expected, got = logits.argmax(1), torch.tensor([[[0, 1]]])
    assert compare(x, expected, got, logits, ATOL).mismatched == 1  # pixel 1 is real
    assert compare(x, expected, torch.tensor([[[0, 0]]]), logits, ATOL).mismatched == 0
    with pytest.raises(ExportError, match="returns shape"):
        compare(x, torch.zeros(2), torch.zeros(3), None, ATOL)


def test_wrapper_outputs_and_bad_flags(tmp_path, capsys):
    loaded = _load(trained_classifier())
    with pytest.raises(ExportError, match="not valid for classification"):
        ExportWrapper(loaded.model, loaded.task, "labels")
    trained = trained_classifier()
    base = [str(trained.config), str(trained.checkpoint)]
    for extra, message in (
        (["--format", "torchscript", "--opset", "17"], "--opset is for --format onnx"),
        (["--format", "onnx", "--shape", "1", "2", "3"], "--shape takes H W"),
        (["--format", "onnx", "--out", str(trained.checkpoint)], "would overwrite a checkpoint"),
    ):
        assert export_main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    # the segmenter's checkpoint is not one of the classifier: refused, as by vistra test
    wrong = [str(trained.config), str(trained_segmenter().checkpoint), "--format", "onnx"]
    assert export_main([*wrong, "--out", str(tmp_path / "never.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "model weights unset" in err[-1], err
    assert list(tmp_path.iterdir()) == []
