"""The model an export traces: a trained classifier or segmentor behind one tensor in,
one tensor out.

:func:`load_model` builds the config's model and loads the checkpoint as ``vistra test``
does (safe load, a strict report: a checkpoint that leaves weights unset is refused).
:class:`ExportWrapper` makes its forward what a deployment runtime needs: a normalised
``(N, 3, H, W)`` float batch (or, with ``with_preprocess``, the raw ``uint8`` batch in the
pipeline's channel order, normalised inside the graph) to class scores/logits
``(N, num_classes)`` or to segmentation logits/scores ``(N, C, H, W)`` resized to the
input, or labels ``(N, H, W)``. No data samples, no Python control flow on values: what
torch.export, ONNX and TorchScript all trace.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vistra import checkpoint as ckpt_io

CLS_OUTPUTS = ("scores", "logits")
SEG_OUTPUTS = ("logits", "scores", "labels")


class ExportError(ValueError):
    """An export that cannot work or whose artefact does not match PyTorch (one line)."""

    vistra_build_error = True  # reported as a user's problem by the CLI boundary


@dataclass(frozen=True)
class LoadedModel:
    model: nn.Module
    cfg: Any
    task: str  # 'classification' or 'segmentation'
    state_dict: dict[str, torch.Tensor]  # the loaded weights, under the checkpoint's keys


def load_model(cfg: Any, checkpoint: str | Path, device: str = "cpu") -> LoadedModel:
    """Build ``cfg.model`` and load ``checkpoint`` strictly, in eval mode on ``device``."""
    import vistra.data  # noqa: F401  (registers the data preprocessors)
    import vistra.models  # noqa: F401  (registers the models)
    from vistra.registry import MODELS, default_scope

    model_cfg = dict(cfg["model"])
    if cfg.get("data_preprocessor") is not None:  # as MMEngine: a top-level preprocessor
        model_cfg.setdefault("data_preprocessor", cfg["data_preprocessor"])
    with default_scope(cfg.get("default_scope")):
        model = MODELS.build(model_cfg, key_path="model")
    loaded = ckpt_io.load_checkpoint_file(
        str(checkpoint), allow_unsafe=bool(cfg.get("allow_unsafe_load"))
    )
    report = ckpt_io.load_state_dict(
        model, ckpt_io.extract_state_dict(loaded), source=str(checkpoint), revise=ckpt_io.DDP_PREFIX
    )
    if report.unset:
        raise ckpt_io.CheckpointError(
            f"{checkpoint} leaves {len(report.unset)} model weights unset "
            f"({', '.join(report.unset[:3])}...): it is not a checkpoint of this config's model"
        )
    if report.unexpected:
        print(
            f"notice: {checkpoint} has {len(report.unexpected)} keys this model does not use "
            f"({', '.join(report.unexpected[:3])}...); they are ignored",
            file=sys.stderr,
        )
    task = _task(model)
    meta = loaded.get("meta") if isinstance(loaded, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("dataset_meta"), dict):
        model.dataset_meta = dict(meta["dataset_meta"])  # the classes it was trained on
    model.to(device).eval()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return LoadedModel(model, cfg, task, state)


def _task(model: nn.Module) -> str:
    from vistra.models.classifiers import ImageClassifier
    from vistra.models.segmentors import BaseSegmentor

    if isinstance(model, ImageClassifier):
        return "classification"
    if isinstance(model, BaseSegmentor):
        return "segmentation"
    raise ExportError(
        f"export supports image classifiers and segmentors; this config's model is a "
        f"{type(model).__name__}"
    )


class Preprocess(nn.Module):
    """The data preprocessor's channel flip and normalisation, traceable: ``uint8`` in,
    normalised float out. Padding is left out: the exported input size is fixed by the
    caller (or dynamic)."""

    def __init__(self, data_preprocessor: nn.Module) -> None:
        super().__init__()
        self.flip = bool(getattr(data_preprocessor, "_channel_conversion", False))
        self.normalize = bool(getattr(data_preprocessor, "_enable_normalize", False))
        if self.normalize:
            self.register_buffer("mean", data_preprocessor.mean.detach().clone().view(1, -1, 1, 1))
            self.register_buffer("std", data_preprocessor.std.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = x.flip(1)
        x = x.float()
        return (x - self.mean) / self.std if self.normalize else x


class ExportWrapper(nn.Module):
    """``model`` as ``forward(images) -> tensor``; ``logits(images)`` is the raw output
    (the verification of ``labels`` uses it to tell a real mismatch from a near tie)."""

    def __init__(
        self, model: nn.Module, task: str, output: str, with_preprocess: bool = False
    ) -> None:
        super().__init__()
        valid = CLS_OUTPUTS if task == "classification" else SEG_OUTPUTS
        if output not in valid:
            raise ExportError(f"--output {output!r} is not valid for {task}; choose {valid}")
        self.model, self.task, self.output = model, task, output
        self.preprocess = Preprocess(model.data_preprocessor) if with_preprocess else None
        self.multi_label = task == "classification" and _is_multi_label(model)
        self.align_corners = bool(getattr(model, "align_corners", False))
        head = getattr(model, "decode_head", None)
        self.threshold = float(getattr(head, "threshold", None) or 0.5)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images) if self.preprocess is not None else images
        out = self.model(x, mode="tensor")
        if isinstance(out, (tuple, list)) and out and isinstance(out[-1], torch.Tensor):
            out = out[-1]  # heads that return several levels: the last is the prediction
        if not isinstance(out, torch.Tensor):
            raise ExportError(
                f"{type(self.model).__name__}(mode='tensor') returns a {type(out).__name__}, "
                "not a tensor: this model cannot be exported as one output"
            )
        if self.task == "segmentation":
            out = F.interpolate(
                out, size=x.shape[2:], mode="bilinear", align_corners=self.align_corners
            )
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.logits(images)
        if self.output == "logits":
            return logits
        binary = self.multi_label or (self.task == "segmentation" and logits.shape[1] == 1)
        if self.output == "scores":
            return logits.sigmoid() if binary else logits.softmax(dim=1)
        if binary:  # 'labels' of a one-channel segmentor, as its predict does
            return (logits.sigmoid() > self.threshold).squeeze(1).long()
        return logits.argmax(dim=1)


def _is_multi_label(model: nn.Module) -> bool:
    from vistra.models.heads.multi_label_head import MultiLabelClsHead

    return isinstance(getattr(model, "head", None), MultiLabelClsHead)


def default_shape(cfg: Any, task: str) -> tuple[int, int]:
    """The input size the config's test data has: a ``crop_size``/``scale`` of the test
    pipeline, else the dataset's ``img_size``; else 224 (classification) or 512."""
    loader = cfg.get("test_dataloader") or cfg.get("val_dataloader") or {}
    dataset = loader.get("dataset") or {}
    for step in reversed(list(dataset.get("pipeline") or [])):
        if not isinstance(step, dict):
            continue
        # a keep-ratio Resize's scale is a bound, not the size the model sees
        keys = ("crop_size",) if step.get("keep_ratio") else ("crop_size", "scale", "size")
        for key in keys:
            size = _pair(step.get(key))
            if size is not None:
                return size
    size = _pair(dataset.get("img_size"))
    if size is not None:
        return size
    return (224, 224) if task == "classification" else (512, 512)


def _pair(value: Any) -> tuple[int, int] | None:
    """(H, W) from an int or an OpenMMLab (W, H) pair."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(type(v) is int for v in value):
        return (int(value[1]), int(value[0]))
    return None
