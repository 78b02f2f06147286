"""What the analysis tools read from a config: a split's dataset, its class names, and the
channel order its images have."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from vistra.registry import DATASETS, RegistryError

PHASES = ("train", "val", "test")


def dataset_config(cfg: Mapping[str, Any], phase: str) -> dict:
    """``cfg['<phase>_dataloader']['dataset']``, or an error naming what the config has."""
    loader = cfg.get(f"{phase}_dataloader")
    if not isinstance(loader, Mapping) or not isinstance(loader.get("dataset"), Mapping):
        have = [p for p in PHASES if isinstance(cfg.get(f"{p}_dataloader"), Mapping)]
        raise RegistryError(
            f"the config has no {phase}_dataloader.dataset; it has "
            f"{', '.join(f'{p}_dataloader' for p in have) or 'no dataloader'}"
        )
    return copy.deepcopy(dict(loader["dataset"]))


def build_dataset(cfg: Mapping[str, Any], phase: str, pipeline: list | None = None) -> Any:
    """The ``phase`` split's dataset; ``pipeline`` replaces its pipeline when given (``[]``:
    the raw data infos only, as analyze-results needs)."""
    dataset_cfg = dataset_config(cfg, phase)
    if pipeline is not None:
        _set_pipeline(dataset_cfg, pipeline)
    dataset = DATASETS.build(dataset_cfg, key_path=f"{phase}_dataloader.dataset")
    if hasattr(dataset, "config_key"):
        dataset.config_key = f"{phase}_dataloader.dataset"
    return dataset


def _set_pipeline(dataset_cfg: dict, pipeline: list) -> None:
    """Into the innermost datasets too: wrappers (RepeatDataset, ConcatDataset) hold them."""
    if isinstance(dataset_cfg.get("dataset"), Mapping):
        _set_pipeline(dataset_cfg["dataset"], pipeline)
    elif isinstance(dataset_cfg.get("datasets"), list):
        for inner in dataset_cfg["datasets"]:
            _set_pipeline(inner, pipeline)
    else:
        dataset_cfg["pipeline"] = list(pipeline)


def images_are_bgr(cfg: Mapping[str, Any]) -> bool:
    """Whether the pipeline's images are BGR: the data preprocessor converts them to RGB
    (``to_rgb`` / ``bgr_to_rgb``), as OpenMMLab configs do for images loaded as BGR.
    Without a preprocessor setting, BGR (what ``LoadImageFromFile`` gives)."""
    model = cfg.get("model") if isinstance(cfg.get("model"), Mapping) else {}
    for pre in (cfg.get("data_preprocessor"), model.get("data_preprocessor")):
        if isinstance(pre, Mapping):
            for key in ("to_rgb", "bgr_to_rgb", "rgb_to_bgr"):
                if key in pre:
                    return bool(pre[key]) if key != "rgb_to_bgr" else not pre[key]
    return True


def dataset_classes(dataset: Any) -> tuple[str, ...] | None:
    meta = getattr(dataset, "metainfo", None) or {}
    classes = meta.get("classes")
    return tuple(classes) if classes else None
