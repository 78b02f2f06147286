"""A trained model from a config and a checkpoint, or from a model-zoo name.

``init_model(config, checkpoint)`` is MMSegmentation's entry point and ``get_model(name)``
MMPretrain's; both return the model in eval mode with ``cfg`` (the merged config) and
``dataset_meta`` (``classes``, ``palette``) attached. The checkpoint goes through vistra's
safe loader and its load report: weights the checkpoint leaves unset are an error, as in
``vistra test`` (``cfg_options={'test_strict_load': False}`` allows them).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vistra import checkpoint as ckpt_io
from vistra.config import Config, ConfigError
from vistra.engine.accelerate import inference_channels_last, use_channels_last
from vistra.registry import DATASETS, MODELS, default_scope, did_you_mean

logger = logging.getLogger("vistra")

TASKS = ("classification", "segmentation", "features")


def load_cfg(config: str | os.PathLike | Config, cfg_options: dict | None = None) -> Config:
    """A copy of ``config`` (a Config or a file), in the 1.x schema, options merged."""
    from vistra.config.legacy import legacy_markers, upgrade_config

    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif isinstance(config, str | os.PathLike):
        if not Path(config).is_file():
            raise ConfigError(f"config file not found: {os.fspath(config)}")
        cfg = Config.fromfile(os.fspath(config))
    else:
        raise TypeError(f"config must be a file path or a Config, got {type(config).__name__}")
    if legacy_markers(cfg):
        cfg = upgrade_config(cfg)
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    if cfg.get("model") is None:
        raise ConfigError(f"{cfg.filename or 'the config'} has no 'model' section")
    return cfg


def build_model(cfg: Config) -> nn.Module:
    """The config's model, without initialising weights (no pretrained download: the
    checkpoint provides every weight)."""
    model_cfg = copy.deepcopy(cfg["model"])
    if isinstance(model_cfg, dict) and cfg.get("data_preprocessor") is not None:
        model_cfg.setdefault("data_preprocessor", copy.deepcopy(cfg["data_preprocessor"]))
    with default_scope(cfg.get("default_scope")):
        return MODELS.build(model_cfg, key_path="model")


class DeviceError(ValueError):
    """A device this machine does not have (the CLI prints it as one ``error:`` line)."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` checked against what this machine has; None picks CUDA when present."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} asked for, but CUDA is not available; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r} asked for, but MPS is not available; use 'cpu'")
    return dev


def load_weights(model: nn.Module, checkpoint: str, cfg: Config) -> dict:
    """Load ``checkpoint`` into ``model`` strictly (see the module doc); its ``meta``."""
    ckpt = ckpt_io.load_checkpoint_file(checkpoint, allow_unsafe=bool(cfg.get("allow_unsafe_load")))
    report = ckpt_io.load_state_dict(
        model, ckpt_io.extract_state_dict(ckpt), source=str(checkpoint), revise=ckpt_io.DDP_PREFIX
    )
    if report.unset and cfg.get("test_strict_load", True):
        raise ckpt_io.CheckpointError(
            f"{checkpoint} leaves {len(report.unset)} model weights unset "
            f"({', '.join(report.unset[:3])}...); is it a checkpoint of this config's model? "
            "If that is intended, pass cfg_options test_strict_load=False"
        )
    if report.unset or report.unexpected:
        logger.warning("%s", report.table())
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    return meta if isinstance(meta, dict) else {}


def dataset_meta_from(meta: dict, cfg: Config) -> dict:
    """``classes``/``palette``: the checkpoint's (1.x ``dataset_meta``, 0.x ``CLASSES``),
    else the config's test (then val) dataset's."""
    if isinstance(meta.get("dataset_meta"), dict) and meta["dataset_meta"].get("classes"):
        return dict(meta["dataset_meta"])
    if meta.get("CLASSES"):
        return {"classes": tuple(meta["CLASSES"]), "palette": meta.get("PALETTE")}
    for key in ("test_dataloader", "val_dataloader", "train_dataloader"):
        dataset = (cfg.get(key) or {}).get("dataset")
        if isinstance(dataset, dict) and dataset.get("type"):
            return _config_dataset_meta(dataset, cfg)
    return {}


def _config_dataset_meta(dataset: dict, cfg: Config) -> dict:
    """A dataset's metainfo without reading its data (``lazy_init``); the class's
    ``METAINFO`` when it cannot be built here (files not on this machine)."""
    dataset = {**copy.deepcopy(dataset), "pipeline": [], "lazy_init": True}
    try:
        with default_scope(cfg.get("default_scope")):
            built = DATASETS.build(dataset, key_path="test_dataloader.dataset")
        return dict(built.metainfo)
    except Exception:
        cls = DATASETS.get(str(dataset["type"]))
        return dict(getattr(cls, "METAINFO", None) or {})


def task_of(model: nn.Module) -> str:
    """'classification', 'segmentation' or 'features' (a model that only embeds)."""
    from vistra.models.segmentors import BaseSegmentor

    if isinstance(model, BaseSegmentor):
        return "segmentation"
    head = getattr(model, "head", None)
    if type(model).__name__.endswith("Classifier") and hasattr(head, "predict"):
        return "classification"
    return "features"


def init_model(
    config: str | os.PathLike | Config,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    cfg_options: dict | None = None,
) -> nn.Module:
    """Build the config's model, load ``checkpoint`` (a path or URL) and put it in eval
    mode on ``device``, with ``model.cfg`` and ``model.dataset_meta`` set."""
    cfg = load_cfg(config, cfg_options)
    dev = resolve_device(device)
    model = build_model(cfg)
    meta: dict = {}
    if checkpoint is not None:
        meta = load_weights(model, os.fspath(checkpoint), cfg)
    else:
        warnings.warn(
            "init_model without a checkpoint: the weights are the initial ones", stacklevel=2
        )
    return _finish(model, cfg, dataset_meta_from(meta, cfg), dev)


def _finish(model: nn.Module, cfg: Config, dataset_meta: dict, device: torch.device) -> nn.Module:
    model.cfg = cfg  # MMSegmentation's attribute
    model._config = cfg  # MMPretrain's
    model.dataset_meta = dataset_meta
    model._dataset_meta = dataset_meta
    model.to(device)
    if inference_channels_last(model, cfg, device):  # faster NHWC convolutions (accelerate.py)
        use_channels_last(model)
    model.eval()
    return model


# ----------------------------------------------------------------------------- the zoo
@functools.cache
def _zoo_entries() -> tuple[Any, ...]:
    """Every entry of the indexes found (read once: a thousand metafile entries)."""
    from vistra.model_index import find_sources, read_models

    return tuple(e for s in find_sources() for e in read_models(s))


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the model-zoo entries (``vistra list-models``'s index) that match
    ``pattern``: a glob (``'resnet18*'``; a trailing ``*`` is implied, as in MMPretrain)
    or a substring."""
    import fnmatch

    names = {e.name for e in _zoo_entries()}
    if pattern is None:
        return sorted(names)
    lowered = pattern.lower()
    if any(c in lowered for c in "*?["):
        return sorted(n for n in names if fnmatch.fnmatchcase(n.lower(), lowered + "*"))
    return sorted(n for n in names if lowered in n.lower())


def zoo_entry(name: str) -> Any:
    """The model-zoo entry called ``name``; an unknown name says what is close."""
    from vistra.model_index import ModelIndexError

    entries = _zoo_entries()
    if not entries:
        raise ModelIndexError(
            f"model {name!r}: no model index found (see `vistra list-models`); pass a config "
            "file instead"
        )
    by_name = {e.name: e for e in entries}
    if name not in by_name:
        raise ModelIndexError(
            f"unknown model {name!r}.{did_you_mean(name, list(by_name))} "
            "`vistra list-models PATTERN` lists the names"
        )
    entry = by_name[name]
    if not entry.config_path or not Path(entry.config_path).is_file():
        raise ModelIndexError(f"model {name!r}: its config {entry.config!r} is not on disk")
    return entry


def get_model(
    model: str | os.PathLike | Config,
    pretrained: bool | str = False,
    device: str | torch.device = "cpu",
    cfg_options: dict | None = None,
) -> nn.Module:
    """A model by zoo name (``list_models()``), config file or Config (MMPretrain's API).

    ``pretrained=True`` loads the zoo entry's published checkpoint (the config's
    ``load_from`` for a config), through the torch hub cache: without network access the
    error names the file to put there. A path or URL loads that checkpoint.
    """
    is_config = isinstance(model, Config) or Path(os.fspath(model)).suffix in (
        ".py",
        ".json",
        ".yaml",
        ".yml",
    )
    if is_config:
        cfg = load_cfg(model, cfg_options)
        weights = cfg.get("load_from") if pretrained is True else None
        if pretrained is True and not weights:  # MMPretrain would predict with random weights
            raise ckpt_io.CheckpointError(
                f"pretrained=True but {cfg.filename or 'the config'} sets no load_from; "
                "pass the checkpoint (pretrained=PATH), or pretrained=False for initial weights"
            )
    else:
        entry = zoo_entry(os.fspath(model))
        cfg = load_cfg(entry.config_path, cfg_options)
        weights = entry.weights if pretrained is True else None
        if pretrained is True and not weights:
            raise ckpt_io.CheckpointError(
                f"model {entry.name!r} has no published checkpoint; pass pretrained=PATH"
            )
    if isinstance(pretrained, str | os.PathLike):
        weights = os.fspath(pretrained)
    dev = resolve_device(device)
    net = build_model(cfg)
    meta = load_weights(net, weights, cfg) if weights else {}
    return _finish(net, cfg, dataset_meta_from(meta, cfg), dev)


def as_model(
    model: nn.Module | str | os.PathLike | Config,
    weights: bool | str | os.PathLike | None,
    device: str | torch.device | None,
) -> nn.Module:
    """What an inferencer's ``model`` argument names, as an eval-mode model on ``device``
    (None: CUDA when present): a built model (``weights`` a checkpoint to load into it),
    a config or a zoo name."""
    dev = resolve_device(device)
    if isinstance(model, nn.Module):
        if not hasattr(model, "cfg"):
            raise ConfigError(
                "a model passed to an inferencer needs its config: build it with "
                "init_model/get_model (they set model.cfg)"
            )
        if isinstance(weights, str | os.PathLike):
            meta = load_weights(model, os.fspath(weights), model.cfg)
            if meta.get("dataset_meta"):
                model.dataset_meta = dict(meta["dataset_meta"])
        if not hasattr(model, "dataset_meta"):
            model.dataset_meta = {}
        return model.to(dev).eval()
    if weights is None or weights is False:
        return get_model(model, pretrained=False, device=dev)
    return get_model(model, pretrained=weights, device=dev)
