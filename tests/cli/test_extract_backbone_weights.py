"""tools/model_converters/extract_backbone_weights.py: a pre-training checkpoint's backbone
loads strictly into a classifier's backbone, in a real subprocess as users run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from vistra.checkpoint import load_state_dict, save_checkpoint
from vistra.registry import MODELS

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "model_converters" / "extract_backbone_weights.py"


def _simclr() -> torch.nn.Module:
    return MODELS.build(
        dict(
            type="SimCLR",
            backbone=dict(type="ResNet", depth=18),
            neck=dict(type="NonLinearNeck", in_channels=512, hid_channels=32, out_channels=16,
                      norm_cfg=dict(type="BN")),
            head=dict(type="ContrastiveHead", loss=dict(type="CrossEntropyLoss"),
                      temperature=0.1),
        )
    )  # fmt: skip


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=120,
        cwd=REPO,
    )  # fmt: skip


def test_backbone_loads_strictly_into_a_classifier(tmp_path):
    model = _simclr()
    source = save_checkpoint(
        {"meta": {"config": "simclr.py"}, "state_dict": model.state_dict()}, tmp_path / "pre.pth"
    )
    proc = _run(source, tmp_path / "backbone.pth")
    assert proc.returncode == 0, proc.stderr
    saved = torch.load(tmp_path / "backbone.pth", weights_only=True)
    assert saved["meta"]["prefix"] == "backbone"
    classifier = MODELS.build(
        dict(
            type="ImageClassifier",
            backbone=dict(type="ResNet", depth=18),
            neck=dict(type="GlobalAveragePooling"),
            head=dict(type="LinearClsHead", num_classes=3, in_channels=512),
        )
    )
    report = load_state_dict(classifier.backbone, saved["state_dict"], source="backbone.pth")
    assert not (report.unset or report.unexpected), report.table()
    for key, value in classifier.backbone.state_dict().items():
        assert torch.equal(value, model.backbone.state_dict()[key]), key


def test_a_prefix_that_matches_nothing_names_the_ones_there(tmp_path):
    source = save_checkpoint({"state_dict": _simclr().state_dict()}, tmp_path / "pre.pth")
    proc = _run(source, tmp_path / "out.pth", "--prefix", "encoder")
    assert proc.returncode != 0
    assert "no weights under 'encoder'" in proc.stderr and "backbone (" in proc.stderr
    assert "neck (" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.pth").exists()


def test_output_must_not_overwrite_the_checkpoint(tmp_path):
    source = save_checkpoint({"state_dict": _simclr().state_dict()}, tmp_path / "pre.pth")
    before = source.read_bytes()
    proc = _run(source, source)
    assert proc.returncode != 0 and "CHECKPOINT itself" in proc.stderr
    assert source.read_bytes() == before
