"""Read the predictions ``vistra test --out preds.pkl|json|yaml`` writes, safely.

Each record is one test sample (``vistra.evaluation.dump``): ``sample_idx``, ``gt_label``,
``pred_label``, ``pred_score`` and, for data on disk, ``img_path``. MMPretrain's own dumps
(``tools/test.py --out x.pkl``) hold the same keys with tensors as values; they read too.

Pickles are opened with an unpickler that rebuilds plain values, numpy arrays and tensors
only (tensor storages through ``torch.load(weights_only=True)``), so a results file cannot
run code, as a checkpoint cannot (docs/en/compatibility.md).
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vistra.data.errors import DataError

RESULT_SUFFIXES = (".pkl", ".pickle", ".json", ".yaml", ".yml")
WRITTEN_BY = "write it with `vistra test CONFIG CHECKPOINT --out preds.pkl` (or .json)"


@dataclass(frozen=True)
class Prediction:
    """One single-label classification result."""

    position: int  # the record's index in the file
    sample_idx: int | None
    gt_label: int
    pred_label: int
    pred_score: np.ndarray | None
    img_path: str | None = None

    @property
    def score(self) -> float:
        """The highest class score (the confidence analyze-results sorts by)."""
        return float(self.pred_score.max()) if self.pred_score is not None else float("nan")

    @property
    def correct(self) -> bool:
        return self.gt_label == self.pred_label


def is_result_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in RESULT_SUFFIXES


def load_records(path: str | Path) -> list[dict]:
    """The list of per-sample dicts in a results file (errors name the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "predictions file not found", str(path))
    suffix = path.suffix.lower()
    if suffix not in RESULT_SUFFIXES:
        raise DataError(
            f"{path}: unsupported predictions file; use one of {', '.join(RESULT_SUFFIXES)}"
        )
    try:
        if suffix in (".pkl", ".pickle"):
            with path.open("rb") as f:
                data = _SafeUnpickler(f).load()
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (pickle.UnpicklingError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read predictions file {path}: {exc}") from exc
    if isinstance(data, dict):
        raise DataError(
            f"{path} holds one dict (keys {sorted(data)[:6]}), not a list of per-sample "
            f"predictions (was it written with --out-item metrics?); {WRITTEN_BY}"
        )
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path} does not hold a list of per-sample dicts; {WRITTEN_BY}")
    if not data:
        raise DataError(f"{path} holds no predictions (an empty list)")
    return data


def load_predictions(path: str | Path) -> list[Prediction]:
    """The single-label classification predictions in ``path``."""
    return [_prediction(record, i, path) for i, record in enumerate(load_records(path))]


def _prediction(record: dict, position: int, path: str | Path) -> Prediction:
    where = f"{path}, record {position}"
    missing = [k for k in ("gt_label",) if k not in record]
    if "pred_label" not in record and "pred_score" not in record:
        missing.append("pred_label")
    if missing:
        hint = (
            "; these look like segmentation results: use `vistra test --out DIR` and "
            "`confusion-matrix CONFIG DIR SAVE_DIR`"
            if "seg_map_path" in record
            else ""
        )
        raise DataError(
            f"{where} has no {' or '.join(missing)} (keys: {sorted(record)}): not a "
            f"classification result{hint}; {WRITTEN_BY}"
        )
    score = None
    if record.get("pred_score") is not None:
        score = np.asarray(_plain(record["pred_score"]), dtype=np.float64).reshape(-1)
    gt = _single_label(record["gt_label"], where, "gt_label")
    if "pred_label" in record:
        pred = _single_label(record["pred_label"], where, "pred_label")
    else:
        pred = int(score.argmax())
    sample_idx = record.get("sample_idx")
    return Prediction(
        position=position,
        sample_idx=None if sample_idx is None else int(_plain(sample_idx)),
        gt_label=gt,
        pred_label=pred,
        pred_score=score,
        img_path=record.get("img_path"),
    )


def _single_label(value: Any, where: str, key: str) -> int:
    labels = np.asarray(_plain(value)).reshape(-1)
    if labels.size != 1:
        raise DataError(
            f"{where}: {key} holds {labels.size} labels; these tools take single-label "
            "results (one label per sample)"
        )
    return int(labels[0])


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


def _load_storage_safely(data: bytes) -> Any:
    """``torch.storage._load_from_bytes``, but with ``weights_only=True``."""
    return torch.load(io.BytesIO(data), weights_only=True)


class _SafeUnpickler(pickle.Unpickler):
    """Plain values, numpy arrays and tensors; any other class is refused by name."""

    _ALLOWED: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): __import__("collections").OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch.storage", "_load_from_bytes"): _load_storage_safely,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    _NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module in self._NUMPY_CORE and name in ("_reconstruct", "scalar"):
            return super().find_class(module, name)
        if module.startswith("numpy") and name.endswith("DType"):  # numpy 2 dtype classes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"it holds a {module}.{name} object; vistra unpickles plain values, numpy arrays "
            "and tensors only (a pickle can run code)"
        )


def class_names(classes: Sequence[str] | None, num_classes: int) -> list[str]:
    """``classes`` when they cover ``num_classes`` labels, else the label indices."""
    if classes is not None and len(classes) == num_classes:
        return [str(c) for c in classes]
    return [str(i) for i in range(num_classes)]
