"""Pre-flight checks of what the dataset configs say, without reading the data.

``check_data_paths``: ``data_root``, ``ann_file`` and ``data_prefix`` exist (MMEngine's
joining rules). ``check_num_classes``: the head's ``num_classes`` agrees with the
datasets' classes, the evaluators and (for batch augments) the data preprocessor. Both
report through ``add(key, message)`` (preflight.py's report).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from vistra.registry import DATASETS, accepted_arguments

Add = Callable[[str, str], None]


def dicts(value: Any, key: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(key, dict)`` for a dict, or for each dict of a list (``key[i]``)."""
    if isinstance(value, Mapping):
        yield key, value
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from dicts(item, f"{key}[{i}]")


def check_data_paths(cfg: Mapping[str, Any], key: str, add: Add) -> None:
    """MMEngine's layout rules: ``ann_file`` and ``data_prefix`` values are relative to
    ``data_root`` unless absolute."""
    from vistra.data.datasets.base import join_root

    root = cfg.get("data_root")
    if isinstance(root, str) and root and not Path(root).expanduser().is_dir():
        add(
            f"{key}.data_root",
            f"folder not found: {os.path.normpath(root)!r} ({cfg['type']}); point data_root at the folder "
            "that holds the data",
        )
        return  # everything below is inside it
    root = root if isinstance(root, str) else ""
    ann = cfg.get("ann_file")
    if isinstance(ann, str) and ann and not Path(join_root(root, ann)).is_file():
        path = os.path.normpath(join_root(root, ann))
        add(f"{key}.ann_file", f"annotation file not found: {path!r}")
    prefix = cfg.get("data_prefix")
    prefixes = {"img_path": prefix} if isinstance(prefix, str) else prefix
    for name, value in (prefixes or {}).items() if isinstance(prefixes, Mapping) else ():
        if isinstance(value, str) and value and not Path(join_root(root, value)).exists():
            path = os.path.normpath(join_root(root, value))
            add(f"{key}.data_prefix.{name}", f"not found: {path!r}")


def check_num_classes(cfg: Mapping[str, Any], sections: tuple[str, ...], add: Add) -> None:
    """The head decides; the data preprocessor, the datasets' classes and the evaluators
    must agree with it. A head smaller than the dataset is an error (labels would fall
    outside it); a classification head larger than the dataset is allowed, as upstream, and
    the preprocessor's count only matters where batch augments (Mixup, CutMix) use it."""
    model = cfg.get("model") if isinstance(cfg.get("model"), Mapping) else {}
    heads = [
        (key, head["num_classes"])
        for name in ("head", "decode_head")  # auxiliary heads may predict other things
        for key, head in dicts(model.get(name), f"model.{name}")
        if isinstance(head.get("num_classes"), int)
    ]
    if not heads:
        return
    head_key, classes = heads[0]
    for key, value in heads[1:]:
        if value != classes:
            add(f"{key}.num_classes={value}", f"differs from {head_key}.num_classes={classes}")
    counts = {
        f"{kind}_dataloader.dataset": _dataset_classes(
            (cfg.get(f"{kind}_dataloader") or {}).get("dataset")
        )
        for kind in sections
    }
    counts = {k: v for k, v in counts.items() if v is not None}
    too_few = {
        k: v for k, v in counts.items() if v > classes or ("decode_head" in model and v != classes)
    }
    for count in sorted(set(too_few.values())):
        names = " and ".join(k for k, v in too_few.items() if v == count)
        add(
            f"{head_key}.num_classes={classes}",
            f"{names} {'have' if ' and ' in names else 'has'} {count} classes; set "
            f"{head_key}.num_classes={count}",
        )
    preprocessor = model.get("data_preprocessor") or cfg.get("data_preprocessor") or {}
    where = "model.data_preprocessor" if model.get("data_preprocessor") else "data_preprocessor"
    value = preprocessor.get("num_classes") if isinstance(preprocessor, Mapping) else None
    # the preprocessor's num_classes one-hot encodes labels for batch augments only
    augments = (
        (model.get("train_cfg") or {}).get("augments")
        if isinstance(model.get("train_cfg"), Mapping)
        else None
    )
    if augments and isinstance(value, int) and value != classes and value not in too_few.values():
        add(f"{where}.num_classes={value}", f"differs from {head_key}.num_classes={classes}")
    for kind in sections:
        for sub_key, metric in dicts(cfg.get(f"{kind}_evaluator"), f"{kind}_evaluator"):
            value = metric.get("num_classes")
            if isinstance(value, int) and value != classes:
                add(
                    f"{sub_key}.num_classes={value}",
                    f"differs from {head_key}.num_classes={classes}",
                )


def _dataset_classes(cfg: Any) -> int | None:
    """How many classes a dataset config has, when that is known without reading data: the
    dataset is built lazily (no data list, no pipeline) and asked for its metainfo."""
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("type"), str):
        return None
    if isinstance(cfg.get("dataset"), Mapping):  # RepeatDataset & co. wrap one dataset
        return _dataset_classes(cfg["dataset"])
    cls = DATASETS.get(cfg["type"], scope=cfg.get("_scope_"))
    valid = accepted_arguments(cls) if cls is not None else None
    if valid is None or "lazy_init" not in valid:
        return None
    try:
        args = {k: v for k, v in cfg.items() if k not in ("type", "_scope_")}
        dataset = cls(**{**args, "lazy_init": True, "pipeline": []})
    except Exception:  # the real build reports it, with its own message
        return None
    classes = (getattr(dataset, "metainfo", None) or {}).get("classes")
    return len(classes) if classes else None
