"""What ``vistra test`` predicts for a few shapes images on disk, to check the inference
API, ``vistra infer`` and the demo against (issue #19).

``cls_reference()`` / ``seg_reference()`` write the test split of the shapes data as PNG
files, run the real ``vistra test`` of the quickstart models (``trained_tiny``) with the
test set pointed at those files, and return the files with the per-image predictions:
``(pred_label, pred_score)`` from ``--out preds.pkl`` (classification) and the label map
from ``--out DIR``'s PNGs (segmentation). Cached for the process.
"""

from __future__ import annotations

import atexit
import functools
import pickle
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from trained_tiny import REPO, TrainedModel, trained_classifier, trained_segmenter

NUM_IMAGES = 5

_CLS_TEST = """_base_ = ['{config}']
test_dataloader = dict(batch_size=2, dataset=dict(data_root='{root}', split='test', num_samples=0,
    pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
"""
_SEG_TEST = """_base_ = ['{config}']
test_dataloader = dict(batch_size=2, dataset=dict(data_root='{root}', split='test', num_samples=0,
    pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]))
"""


@dataclass(frozen=True)
class Reference:
    model: TrainedModel
    images: list[Path]  # sorted
    labels: dict[str, int]  # image path -> predicted label (classification)
    scores: dict[str, np.ndarray]  # image path -> predicted scores (classification)
    masks: dict[str, np.ndarray]  # image stem -> predicted label map (segmentation)


def _vistra_test(model: TrainedModel, text: str, root: Path, out: Path) -> None:
    config = root / "test_on_files.py"
    config.write_text(text.format(config=model.config, root=root))
    cmd = [sys.executable, "-m", "vistra", "test", str(config), str(model.checkpoint),
           "--work-dir", str(root / "work"), "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"vistra test failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def _tmp(name: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"vistra-infer-ref-{name}-"))
    atexit.register(shutil.rmtree, root, True)
    return root


@functools.cache
def cls_reference() -> Reference:
    from vistra.data.datasets.shapes import write_shapes_split

    model, root = trained_classifier(), _tmp("cls")
    write_shapes_split(root, "cls", "test", NUM_IMAGES)
    _vistra_test(model, _CLS_TEST, root, root / "preds.pkl")
    records = pickle.loads((root / "preds.pkl").read_bytes())
    labels = {r["img_path"]: int(r["pred_label"]) for r in records}
    scores = {r["img_path"]: np.asarray(r["pred_score"], dtype=np.float32) for r in records}
    images = sorted(Path(p) for p in labels)
    assert len(images) == NUM_IMAGES
    return Reference(model, images, labels, scores, {})


def _varied_head(model: TrainedModel, root: Path) -> TrainedModel:
    """The segmenter with a random (seeded) classifier layer: a few iterations of training
    predict background everywhere, which would make comparing label maps meaningless."""
    import torch

    ckpt = torch.load(model.checkpoint, map_location="cpu", weights_only=True)
    weights = ckpt["state_dict"]
    generator = torch.Generator().manual_seed(0)
    shape = weights["decode_head.conv_seg.weight"].shape
    weights["decode_head.conv_seg.weight"] = torch.randn(shape, generator=generator)
    weights["decode_head.conv_seg.bias"] = torch.zeros(shape[0])
    torch.save(ckpt, root / "varied_head.pth")
    return TrainedModel(model.config, root / "varied_head.pth", model.work_dir)


@functools.cache
def seg_reference() -> Reference:
    from vistra.data.datasets.shapes import write_shapes_split

    root = _tmp("seg")
    model = _varied_head(trained_segmenter(), root)
    write_shapes_split(root, "seg", "test", NUM_IMAGES)
    _vistra_test(model, _SEG_TEST, root, root / "pred_pngs")
    masks = {p.stem: np.asarray(Image.open(p)) for p in sorted((root / "pred_pngs").glob("*.png"))}
    images = sorted((root / "img_dir" / "test").glob("*.png"))
    assert len(masks) == len(images) == NUM_IMAGES
    assert len(np.unique(np.stack(list(masks.values())))) > 1, "the label maps are all one class"
    return Reference(model, images, {}, {}, masks)
