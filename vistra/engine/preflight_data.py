"""``vistra check --data``: load every sample of the datasets a run reads, once.

Pre-flight validation (preflight.py) never reads data; this does, to find what only the
data can tell: files that do not decode, and labels outside the head's classes. It builds
each dataset as the run would and runs its pipeline on every sample, so a corrupt image is
reported with the same message training would stop with, but before training starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from vistra.registry import DATASETS

MAX_PER_DATASET = 5  # problems listed per dataset before "... and N more"


def read_every_sample(
    cfg: Mapping[str, Any], sections: tuple[str, ...]
) -> Iterator[tuple[str, str]]:
    """(config key, problem) for every sample that cannot be loaded or is mislabelled."""
    classes = _head_classes(cfg)
    seen: set[int] = set()
    for kind in sections:
        loader = cfg.get(f"{kind}_dataloader")
        if not isinstance(loader, Mapping) or not isinstance(loader.get("dataset"), Mapping):
            continue
        if id(loader["dataset"]) in seen:  # the test set is often the val set
            continue
        seen.add(id(loader["dataset"]))
        key, dataset_cfg = f"{kind}_dataloader.dataset", loader["dataset"]
        # a RepeatDataset's repeats are the same samples: read the inner dataset once
        while str(dataset_cfg.get("type")).split(".")[-1] == "RepeatDataset" and isinstance(
            dataset_cfg.get("dataset"), Mapping
        ):
            key, dataset_cfg = f"{key}.dataset", dataset_cfg["dataset"]
        strict = {**dataset_cfg, "skip_corrupt": False}  # report, do not skip
        try:
            dataset = DATASETS.build(strict, key_path=key)
        except Exception:
            dataset = DATASETS.build(dataset_cfg, key_path=key)
        yield from _scan(dataset, key, classes)


def _scan(dataset: Any, key: str, classes: int | None) -> Iterator[tuple[str, str]]:
    problems = 0
    for index in range(len(dataset)):
        message = _problem(dataset, index, classes)
        if message is None:
            continue
        problems += 1
        if problems <= MAX_PER_DATASET:
            yield key, message
    if problems > MAX_PER_DATASET:
        yield key, f"... and {problems - MAX_PER_DATASET} more unreadable or mislabelled samples"


def _problem(dataset: Any, index: int, classes: int | None) -> str | None:
    try:
        sample = dataset[index]
    except Exception as exc:
        return " ".join(str(exc).split())
    label = _label(sample)
    if classes is not None and label is not None and not 0 <= label < classes:
        info = dataset.get_data_info(index) if hasattr(dataset, "get_data_info") else {}
        name = f" ({info['img_path']})" if info.get("img_path") else ""
        return (
            f"sample {index}{name} has label {label}, outside the head's num_classes={classes}; "
            f"set num_classes to at least {label + 1} or fix the label"
        )
    return None


def _label(sample: Any) -> int | None:
    data_sample = sample.get("data_samples") if isinstance(sample, Mapping) else None
    gt = getattr(data_sample, "gt_label", None)
    if gt is None:
        return None
    try:
        values = gt.flatten().tolist() if hasattr(gt, "flatten") else [int(gt)]
    except (TypeError, ValueError):
        return None
    return int(max(values)) if values else None


def _head_classes(cfg: Mapping[str, Any]) -> int | None:
    model = cfg.get("model")
    head = model.get("head") if isinstance(model, Mapping) else None
    value = head.get("num_classes") if isinstance(head, Mapping) else None
    return value if isinstance(value, int) else None
