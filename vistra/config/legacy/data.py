"""0.x ``data=dict(samples_per_gpu, workers_per_gpu, train, val, test)`` -> the 1.x
``train_dataloader``/``val_dataloader``/``test_dataloader`` (MMEngine's keys).

The 0.x tools built their loaders in code, each with its own defaults; the 1.x config
spells every one of them out:

- batch size: ``samples_per_gpu`` (``imgs_per_gpu`` wins, as in 0.x); MMSegmentation 0.x
  validated and tested one image per GPU;
- samplers: training shuffles (``InfiniteSampler`` under an ``IterBasedRunner``);
  validation and test do not;
- MMSegmentation 0.x kept workers alive (``persistent_workers=True``) and dropped the last
  partial training batch; MMSelfSup 0.x read ``persistent_workers`` and ``prefetch`` at the
  top level and ``drop_last`` in ``data``; ``data.<split>_dataloader`` overrides all;
- datasets: MMSegmentation's ``img_dir``/``ann_dir``/``split`` are 1.x's ``data_prefix``
  and ``ann_file`` (lists of them were a concatenation); MMClassification's ``data_prefix``
  folder is ``data_prefix.img_path`` (CIFAR: ``data_root`` and ``split``); MMSelfSup's
  ``SingleViewDataset``/``MultiViewDataset`` around a ``data_source`` are the source dataset
  with ``LoadImageFromFile``, ``MultiView`` and ``PackInputs`` in its pipeline.

Pipelines are translated step by step in :mod:`vistra.config.legacy.pipelines`; what they
did that 1.x does in the model's data preprocessor is collected in ``ctx.preprocessor``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vistra.config.errors import did_you_mean
from vistra.config.legacy.context import LegacyContext
from vistra.config.legacy.pipelines import (
    PipelineResult,
    check_file_client,
    pack_type,
    translate_pipeline,
)

SPLITS = ("train", "val", "test")
# data-level DataLoader settings, and what 1.x calls them
LOADER_KEYS = {
    "samples_per_gpu": "batch_size",
    "imgs_per_gpu": "batch_size",
    "workers_per_gpu": "num_workers",
    "persistent_workers": "persistent_workers",
    "shuffle": "shuffle",
    "drop_last": "drop_last",
    "pin_memory": "pin_memory",
    "round_up": "round_up",
    "prefetch_factor": "prefetch_factor",
}
DATA_KEYS = (*LOADER_KEYS, *SPLITS, *(f"{s}_dataloader" for s in SPLITS), "sampling_replace")
UNUSED_SPLITS = ("extract",)  # MMSelfSup 0.x tools/extract.py's split: no 1.x loop reads it
SELFSUP_DATASETS = ("SingleViewDataset", "MultiViewDataset")
UNSUPPORTED_WRAPPERS = ("ClassBalancedDataset", "KFoldDataset", "MultiImageMixDataset")
SEG_KEPT = ("data_root", "img_suffix", "seg_map_suffix", "reduce_zero_label", "ignore_index")


@dataclass
class _State:
    """What translating the datasets' pipelines collected for the rest of the config."""

    normalize: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    missing_normalize: list[str] = field(default_factory=list)
    pads: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    tta: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    load_annotations: dict[str, Any] | None = None
    pipelines: list[tuple[list, list]] = field(default_factory=list)  # (0.x, 1.x) pairs

    def lookup(self, old: Any) -> list | None:
        """The 1.x form of a 0.x pipeline some dataset used (for top-level variables)."""
        for before, after in self.pipelines:
            if before == old:
                return copy.deepcopy(after)
        return None


def translate(ctx: LegacyContext) -> None:
    """Rewrite ``data`` (and the 0.x helper variables around it) as 1.x dataloaders."""
    data = copy.deepcopy(ctx.old.get("data"))  # ctx.old stays as loaded
    if not _is_legacy_data(data):
        return
    ctx.new.pop("data", None)
    _check_data(ctx, data)
    state = _State()
    loaders = {s: _loader(ctx, data, s, state) for s in SPLITS if data.get(s) is not None}
    if "train" in loaders:
        ctx.new["train_dataloader"] = loaders["train"]
    _val_and_test(ctx, loaders)
    _set_preprocessor(ctx, state)
    _set_tta(ctx, state)
    _replace_top_level_pipelines(ctx, state)
    for key in ("img_norm_cfg", "persistent_workers", "prefetch", "sampler"):
        ctx.new.pop(key, None)


def _is_legacy_data(data: Any) -> bool:
    return isinstance(data, Mapping) and any(
        k in data for k in ("train", "val", "test", "samples_per_gpu", "workers_per_gpu")
    )


def _check_data(ctx: LegacyContext, data: Mapping[str, Any]) -> None:
    if ctx.old.get("prefetch"):
        raise ctx.error(
            "prefetch",
            "prefetch=True (MMSelfSup 0.x's DataPrefetcher, which normalised on the GPU) has no "
            "1.x counterpart: the model's data preprocessor normalises every batch on the "
            "device already; set prefetch=False and keep Normalize in the pipeline",
        )
    if data.get("sampling_replace"):
        raise ctx.error("data.sampling_replace", "sampling with replacement is not supported")
    for key in data:
        if key in UNUSED_SPLITS:
            ctx.note(f"dropped: data.{key} (no 1.x loop reads it)")
        elif key not in DATA_KEYS:
            raise ctx.error(
                f"data.{key}",
                f"unknown key.{did_you_mean(key, DATA_KEYS)} Valid: {', '.join(DATA_KEYS)}",
            )


# ----------------------------------------------------------------------------- loaders
def _loader(
    ctx: LegacyContext, data: Mapping[str, Any], split: str, state: _State
) -> dict[str, Any]:
    settings = _settings(ctx, data, split)
    loader: dict[str, Any] = dict(
        batch_size=settings["batch_size"], num_workers=settings["num_workers"]
    )
    if settings.get("persistent_workers") and settings["num_workers"] > 0:
        loader["persistent_workers"] = True
    for key in ("drop_last", "pin_memory", "prefetch_factor"):
        if settings.get(key) is not None:
            loader[key] = settings[key]
    loader["sampler"] = _sampler(ctx, split, settings)
    if ctx.task == "selfsup":
        loader["collate_fn"] = dict(type="default_collate")  # views stacked per batch, as 1.x
    dataset = data[split]
    loader["dataset"] = _dataset(ctx, dataset, f"data.{split}", state, split)
    kind = dataset.get("type", "?") if isinstance(dataset, Mapping) else "list"
    ctx.note(
        f"data.{split} ({kind}) -> {split}_dataloader (batch {loader['batch_size']}, "
        f"{loader['num_workers']} workers, {loader['sampler']['type']})"
    )
    return loader


def _settings(ctx: LegacyContext, data: Mapping[str, Any], split: str) -> dict[str, Any]:
    """The 0.x tool's loader settings for ``split``, with the config's overrides applied."""
    batch = data.get("imgs_per_gpu", data.get("samples_per_gpu"))
    if batch is None or data.get("workers_per_gpu") is None:
        raise ctx.error("data", "needs samples_per_gpu and workers_per_gpu (as 0.x did)")
    seg, train = ctx.task == "segmentation", split == "train"
    out: dict[str, Any] = dict(batch_size=batch, num_workers=data["workers_per_gpu"])
    if ctx.task == "selfsup":
        top = ctx.old.get("persistent_workers")  # MMSelfSup 0.x read it at the top level
        out["persistent_workers"] = data.get("persistent_workers", False) if top is None else top
    else:  # MMSegmentation 0.x's build_dataloader kept workers alive; MMCls 0.x did not
        out["persistent_workers"] = data.get("persistent_workers", seg)
    if seg and not train:
        out["batch_size"] = 1  # MMSegmentation 0.x: one image per GPU in val and test
    out["shuffle"] = data.get("shuffle", True) if train else False
    if train:
        out["drop_last"] = data.get("drop_last", True if seg and not ctx.iter_based else None)
    for key in ("pin_memory", "round_up", "prefetch_factor"):
        out[key] = data.get(key)
    overrides = data.get(f"{split}_dataloader") or {}
    for key, value in overrides.items():
        if key not in LOADER_KEYS:
            raise ctx.error(
                f"data.{split}_dataloader.{key}",
                f"unknown key.{did_you_mean(key, LOADER_KEYS)} Valid: {', '.join(LOADER_KEYS)}",
            )
        out[LOADER_KEYS[key]] = value
    return out


def _sampler(ctx: LegacyContext, split: str, settings: dict[str, Any]) -> dict[str, Any]:
    if split != "train":
        sampler = dict(type="DefaultSampler", shuffle=bool(settings["shuffle"]))
    elif isinstance(ctx.old.get("sampler"), Mapping):  # MMClassification 0.x's `sampler=`
        sampler = copy.deepcopy(dict(ctx.old["sampler"]))
        sampler.setdefault("shuffle", bool(settings["shuffle"]))
        ctx.note(f"sampler ({sampler.get('type')}) -> train_dataloader.sampler")
    else:
        kind = "InfiniteSampler" if ctx.iter_based else "DefaultSampler"
        sampler = dict(type=kind, shuffle=bool(settings["shuffle"]))
    if settings.get("round_up") is not None and sampler["type"] == "DefaultSampler":
        sampler["round_up"] = settings["round_up"]
    return sampler


def _val_and_test(ctx: LegacyContext, loaders: dict[str, dict[str, Any]]) -> None:
    if "val" in loaders:
        ctx.new["val_dataloader"] = loaders["val"]
    else:
        ctx.note("data has no val split: no val_dataloader (training does not validate)")
    if "test" in loaders:
        ctx.new["test_dataloader"] = loaders["test"]
    elif "val" in loaders:
        ctx.new["test_dataloader"] = copy.deepcopy(loaders["val"])
        ctx.note("data has no test split: test_dataloader tests on data.val")


# ----------------------------------------------------------------------------- datasets
def _dataset(ctx: LegacyContext, cfg: Any, key: str, state: _State, split: str) -> dict[str, Any]:
    if isinstance(cfg, (list, tuple)):  # 0.x build_dataset concatenated a list of configs
        parts = [_dataset(ctx, c, f"{key}[{i}]", state, split) for i, c in enumerate(cfg)]
        return dict(type="ConcatDataset", datasets=parts)
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise ctx.error(key, f"a dataset must be a dict with a 'type', got {cfg!r}")
    kind = str(cfg["type"]).split(".")[-1]
    if kind == "ConcatDataset":
        return _concat(ctx, cfg, key, state, split)
    if kind == "RepeatDataset":
        return _repeat(ctx, cfg, key, state, split)
    if kind in UNSUPPORTED_WRAPPERS:
        raise ctx.error(f"{key}.type", f"{kind} is not available in vistra; remove the wrapper")
    if kind in SELFSUP_DATASETS:
        return _selfsup_dataset(ctx, dict(cfg), key, state, split)
    if "data_source" in cfg:
        raise ctx.error(
            f"{key}.type",
            f"MMSelfSup 0.x dataset {kind!r} has no 1.x translation; supported: "
            f"{', '.join(SELFSUP_DATASETS)}",
        )
    if ctx.task == "segmentation" or "img_dir" in cfg:
        return _seg_dataset(ctx, dict(cfg), key, state, split)
    return _cls_dataset(ctx, dict(cfg), key, state, split)


def _concat(ctx: LegacyContext, cfg: Mapping, key: str, state: _State, split: str) -> dict:
    if "separate_eval" in cfg and split != "train":
        ctx.note(f"{key}: dropped separate_eval (1.x evaluates the concatenation as one set)")
    parts = cfg.get("datasets") or []
    out = [_dataset(ctx, c, f"{key}.datasets[{i}]", state, split) for i, c in enumerate(parts)]
    return dict(type="ConcatDataset", datasets=out)


def _repeat(ctx: LegacyContext, cfg: Mapping, key: str, state: _State, split: str) -> dict:
    """An iteration-based run draws an endless stream: repeating the dataset changes
    nothing there. An epoch-based run would need RepeatDataset, which vistra lacks."""
    if not (ctx.iter_based and split == "train"):
        raise ctx.error(
            f"{key}.type",
            f"RepeatDataset (times={cfg.get('times')}) is not available in vistra; remove the "
            "wrapper and multiply the number of epochs by `times` instead",
        )
    ctx.note(
        f"{key}: RepeatDataset (times={cfg.get('times')}) unwrapped: the iteration-based "
        "loop's InfiniteSampler repeats the dataset endlessly already"
    )
    return _dataset(ctx, cfg["dataset"], f"{key}.dataset", state, split)


def _seg_dataset(ctx: LegacyContext, cfg: dict, key: str, state: _State, split: str) -> dict:
    """MMSegmentation 0.x ``CustomDataset`` arguments -> ``BaseSegDataset`` arguments."""
    names = ("img_dir", "ann_dir", "split")
    listed = {k: cfg[k] for k in names if isinstance(cfg.get(k), (list, tuple))}
    if listed:
        return _seg_concat(ctx, cfg, listed, key, state, split)
    cfg.pop("separate_eval", None)
    out: dict[str, Any] = dict(type=cfg.pop("type"))
    out.update({k: v for k in SEG_KEPT if (v := cfg.pop(k, None)) is not None})
    img_dir, ann_dir, ann_file = (cfg.pop(k, None) for k in names)
    if img_dir is not None:
        out["data_prefix"] = dict(img_path=img_dir)
        if ann_dir is not None:
            out["data_prefix"]["seg_map_path"] = ann_dir
    if ann_file is not None:
        out["ann_file"] = ann_file  # MMSegmentation 0.x's `split` list, under data_root
    _metainfo(cfg, out)
    _drop(ctx, cfg, key, "test_mode", "1.x test pipelines are configured in the loader")
    _drop(ctx, cfg, key, "gt_seg_map_loader_cfg", "LoadAnnotations in the pipeline reads masks")
    check_file_client(ctx, cfg, key)
    annotations = split != "train" and ann_dir is not None
    steps = _pipeline(ctx, cfg.pop("pipeline", None), f"{key}.pipeline", state, split, annotations)
    out.update(cfg)
    out["pipeline"] = steps
    return out


def _seg_concat(
    ctx: LegacyContext, cfg: dict, listed: dict, key: str, state: _State, split: str
) -> dict:
    """Lists in img_dir/ann_dir/split were one dataset per entry (others broadcast)."""
    n = max(len(v) for v in listed.values())
    for name, values in listed.items():
        if len(values) not in (1, n):
            raise ctx.error(f"{key}.{name}", f"has {len(values)} entries; the other lists have {n}")
    parts = []
    for i in range(n):
        part = dict(cfg, **{k: v[i] if len(v) > 1 else v[0] for k, v in listed.items()})
        parts.append(_seg_dataset(ctx, part, key, state, split))
    ctx.note(f"{key}: lists in {'/'.join(listed)} -> ConcatDataset of {n} datasets")
    return dict(type="ConcatDataset", datasets=parts)


def _with_annotations(steps: list[dict], load: dict[str, Any] | None) -> list[dict]:
    """1.x evaluates the masks the test pipeline loads (after Resize, so at full size);
    0.x evaluation read them itself."""
    if any(str(s.get("type", "")).endswith("LoadAnnotations") for s in steps):
        return steps
    load = copy.deepcopy(load) if load is not None else dict(type="LoadAnnotations")
    at = len(steps) - 1 if steps and steps[-1].get("type") == "PackSegInputs" else len(steps)
    return [*steps[:at], load, *steps[at:]]


def _cls_dataset(ctx: LegacyContext, cfg: dict, key: str, state: _State, split: str) -> dict:
    """MMClassification 0.x ``BaseDataset`` arguments -> MMPretrain 1.x arguments."""
    kind = str(cfg["type"]).split(".")[-1]
    out: dict[str, Any] = dict(type=cfg.pop("type"))
    prefix, test_mode = cfg.pop("data_prefix", None), cfg.pop("test_mode", False)
    cifar = kind in ("CIFAR10", "CIFAR100")
    if cifar:
        if prefix is not None:
            out["data_root"] = prefix
        out["split"] = "test" if test_mode else "train"
    else:
        if prefix is not None:
            out["data_prefix"] = prefix if isinstance(prefix, Mapping) else dict(img_path=prefix)
        if test_mode:
            ctx.note(f"{key}: dropped test_mode (1.x test pipelines are set in the loader)")
    if (ann_file := cfg.pop("ann_file", None)) is not None:
        out["ann_file"] = ann_file  # relative to the working directory, as in 0.x
    _metainfo(cfg, out)
    check_file_client(ctx, cfg, key)
    steps = _pipeline(ctx, cfg.pop("pipeline", None), f"{key}.pipeline", state, split, rgb=cifar)
    out.update(cfg)
    out["pipeline"] = steps
    return out


def _metainfo(cfg: dict, out: dict) -> None:
    meta = {k: cfg.pop(k) for k in ("classes", "palette") if k in cfg}
    meta = {k: v for k, v in meta.items() if v is not None}
    if meta:
        out["metainfo"] = meta


def _drop(ctx: LegacyContext, cfg: dict, key: str, name: str, why: str) -> None:
    if name in cfg:
        value = cfg.pop(name)
        if value:
            ctx.note(f"{key}: dropped {name}={value!r} ({why})")


# ----------------------------------------------------------------------------- self-sup
def _selfsup_dataset(ctx: LegacyContext, cfg: dict, key: str, state: _State, split: str) -> dict:
    """MMSelfSup 0.x ``SingleViewDataset``/``MultiViewDataset`` -> the source dataset."""
    kind = str(cfg.pop("type")).split(".")[-1]
    if cfg.pop("prefetch", False):
        raise ctx.error(f"{key}.prefetch", "prefetch=True is not supported; set prefetch=False")
    source = cfg.pop("data_source", None)
    out, rgb, color_type = _data_source(ctx, source, f"{key}.data_source")
    load = [] if rgb else [dict(type="LoadImageFromFile")]
    if load and color_type not in (None, "color"):
        load[0]["color_type"] = color_type
    old = cfg.pop("pipeline", None)
    if kind == "SingleViewDataset":
        body = _selfsup_pipeline(ctx, old, f"{key}.pipeline", state, rgb)
    else:
        body = [_multi_view(ctx, cfg, key, state, rgb)]
    if cfg:
        raise ctx.error(f"{key}.{next(iter(cfg))}", f"unknown {kind} argument")
    out["pipeline"] = [*load, *body, dict(type="PackInputs")]
    if old is not None:  # a top-level train_pipeline names the whole 1.x pipeline
        state.pipelines.append((copy.deepcopy(old), copy.deepcopy(out["pipeline"])))
    return out


def _multi_view(ctx: LegacyContext, cfg: dict, key: str, state: _State, rgb: bool) -> dict:
    pipes, views = cfg.pop("pipelines", None) or [], cfg.pop("num_views", None) or []
    if len(pipes) != len(views) or not pipes:
        raise ctx.error(
            f"{key}.num_views", f"needs one entry per pipeline, got {views!r} for {len(pipes)}"
        )
    translated = [
        _selfsup_pipeline(ctx, p, f"{key}.pipelines[{i}]", state, rgb, record=True)
        for i, p in enumerate(pipes)
    ]
    num_views = views[0] if len(views) == 1 else list(views)
    return dict(type="MultiView", num_views=num_views, transforms=translated)


def _selfsup_pipeline(
    ctx: LegacyContext, steps: Any, key: str, state: _State, rgb: bool, record: bool = False
) -> list[dict]:
    result = translate_pipeline(ctx, steps, key, pack=False, rgb_images=rgb)
    _collect(state, result, key, "train", steps, record)
    return result.steps


def _data_source(ctx: LegacyContext, source: Any, key: str) -> tuple[dict, bool, Any]:
    """``(1.x dataset without pipeline, images are RGB arrays, color_type)``."""
    if not isinstance(source, Mapping) or "type" not in source:
        raise ctx.error(key, f"must be a dict with a 'type', got {source!r}")
    src = dict(source)
    kind = str(src.pop("type")).split(".")[-1]
    prefix, ann_file = src.pop("data_prefix", None), src.pop("ann_file", None)
    test_mode, color_type = src.pop("test_mode", False), src.pop("color_type", None)
    src.pop("channel_order", None)  # 1.x loads BGR; the preprocessor's to_rgb converts
    check_file_client(ctx, src, key)
    if kind in ("CIFAR10", "CIFAR100"):
        out: dict[str, Any] = dict(type=kind, data_root=prefix)
        out["split"] = "test" if test_mode else "train"
    elif kind in ("ImageNet", "ImageList"):
        out = dict(type="ImageNet" if kind == "ImageNet" else "CustomDataset")
        out["data_prefix"] = dict(img_path=prefix or "")
        if kind == "ImageList":
            ctx.note(f"{key}: ImageList -> CustomDataset (ann_file lines '<path> <label>')")
    else:
        raise ctx.error(
            f"{key}.type",
            f"data source {kind!r} is not supported; use ImageNet, ImageList, CIFAR10",
        )
    if ann_file is not None:
        out["ann_file"] = ann_file  # relative to the working directory, as in 0.x
    _metainfo(src, out)
    if src:
        raise ctx.error(f"{key}.{next(iter(src))}", f"unknown {kind} data source argument")
    return out, kind.startswith("CIFAR"), color_type


# ----------------------------------------------------------------------------- pipelines
def _pipeline(
    ctx: LegacyContext,
    steps: Any,
    key: str,
    state: _State,
    split: str,
    annotations: bool = False,
    rgb: bool = False,
) -> list[dict]:
    result = translate_pipeline(ctx, steps, key, rgb_images=rgb)
    if split == "train" and state.load_annotations is None:
        state.load_annotations = result.load_annotations
    if annotations:
        result.steps = _with_annotations(result.steps, state.load_annotations)
    _collect(state, result, key, split, steps, record=True)
    return result.steps


def _collect(
    state: _State, result: PipelineResult, key: str, split: str, old: Any, record: bool
) -> None:
    if result.normalize is not None:
        state.normalize.append((key, result.normalize))
    else:
        state.missing_normalize.append(key)
    if result.pad is not None:
        state.pads.append((split, key, result.pad))
    if result.tta_pipeline is not None:
        state.tta.setdefault(split, result.tta_pipeline)
    if record and old is not None:
        state.pipelines.append((copy.deepcopy(old), copy.deepcopy(result.steps)))


def _set_preprocessor(ctx: LegacyContext, state: _State) -> None:
    """Every split shares the model's preprocessor, so the pipelines must agree."""
    if state.normalize:
        first_key, first = state.normalize[0]
        for key, settings in state.normalize[1:]:
            if settings != first:
                raise ctx.error(
                    key,
                    f"Normalize {settings} differs from {first} in {first_key}; 1.x normalises "
                    "every split once, in the model's data preprocessor: make them agree",
                )
        ctx.preprocessor.update(first)
        if state.missing_normalize:
            ctx.note(
                f"{', '.join(state.missing_normalize)} did not normalise in 0.x; in 1.x the "
                "model's data preprocessor normalises every split"
            )
    train_pads = [p for split, _, p in state.pads if split == "train"]
    if train_pads:
        ctx.preprocessor.update(train_pads[0])
    for split, key, pad in state.pads:
        if split != "train" and pad != (train_pads[0] if train_pads else None):
            ctx.note(f"dropped: {key} Pad {pad} (the training Pad decides 1.x padding)")


def _set_tta(ctx: LegacyContext, state: _State) -> None:
    tta = state.tta.get("test") or state.tta.get("val")
    if tta is None:
        return
    if "tta_pipeline" not in ctx.new:
        ctx.new["tta_pipeline"] = tta
        ctx.note("MultiScaleFlipAug -> tta_pipeline (used by `vistra test --tta`)")
    ctx.new.setdefault("tta_model", dict(type="SegTTAModel"))


def _replace_top_level_pipelines(ctx: LegacyContext, state: _State) -> None:
    """Top-level ``*_pipeline`` variables become the 1.x pipelines the loaders use, so that
    the written config reads consistently."""
    for name in list(ctx.new):
        old = ctx.old.get(name)
        if not name.endswith("pipeline") or name == "tta_pipeline" or not _is_pipeline(old):
            continue
        new = state.lookup(old)
        if new is None and name in ("train_pipeline", "test_pipeline"):
            pack = ctx.task != "selfsup"
            new = translate_pipeline(ctx, old, name, pack=pack, quiet=True).steps
            if name == "test_pipeline" and pack_type(ctx.task) == "PackSegInputs":
                new = _with_annotations(new, state.load_annotations)
        if new is not None:
            ctx.new[name] = new


def _is_pipeline(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(s, Mapping) and "type" in s for s in value)


__all__ = ["translate"]
