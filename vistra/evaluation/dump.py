"""``DumpResults``: writes every test prediction to a file (``test --out x.pkl|json|yaml``)."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vistra.evaluation.metric import BaseMetric
from vistra.registry import METRICS

logger = logging.getLogger("vistra")

# Per-sample fields worth keeping; big per-pixel maps are left to `--out DIR` PNGs.
KEEP = (
    "sample_idx",
    "img_path",
    "gt_label",
    "pred_label",
    "pred_score",
    "gt_score",
    "seg_map_path",
)


def to_plain(value: Any) -> Any:
    """Tensors and arrays become (nested) lists, so any of pkl/json/yaml can hold them."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def dump_file(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as pickle, JSON or YAML by the file's extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        path.write_bytes(pickle.dumps(obj))
    elif suffix == ".json":
        path.write_text(json.dumps(obj, indent=2) + "\n")
    elif suffix in (".yaml", ".yml"):
        import yaml

        path.write_text(yaml.safe_dump(obj, sort_keys=False))
    else:
        raise ValueError(f"cannot write {path}: use a .pkl, .json or .yaml file")


def prediction_record(sample: dict) -> dict:
    record = {k: to_plain(sample[k]) for k in KEEP if k in sample}
    for key in ("gt_label", "pred_label"):  # one-element label tensors read as ints
        if isinstance(record.get(key), list) and len(record[key]) == 1:
            record[key] = record[key][0]
    return record


@METRICS.register_module()
class DumpResults(BaseMetric):
    """Collects one record per sample (label, score, ground truth) and writes them."""

    def __init__(
        self, out_file_path: str, collect_device: str = "cpu", prefix: str | None = None
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        suffix = Path(out_file_path).suffix.lower()
        if suffix not in (".pkl", ".pickle", ".json", ".yaml", ".yml"):
            raise ValueError(
                f"DumpResults out_file_path={out_file_path!r}: use a .pkl, .json or .yaml file"
            )
        self.out_file_path = out_file_path

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        self.results.extend(prediction_record(s) for s in data_samples)

    def compute_metrics(self, results: list) -> dict[str, Any]:
        dump_file(results, self.out_file_path)
        logger.info("%d predictions written to %s", len(results), self.out_file_path)
        return {}
