"""Shrinking a real config to a run of seconds on CPU: tiny generated data of the dataset's
format, batch 2, no workers, two iterations, validation once, no pretrained download, and
the model's own sizes made to fit (tests/configs/test_config_tree.py trains every shipped
config this way, tests/upstream/test_seg_zoo_train.py every family of the segmentation zoo
from MMSegmentation's own config files)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from fake_data import WRITERS

from vistra.config import Config
from vistra.engine.runner import Runner

# Segmentation configs train on 512x512 to 2048x1024 pixels and the tiny data is 64
# pixels high: crops of 32 pixels keep two steps of a ResNet-101 PointRend (or a dilated
# ResNet-50 with an ASPP head) to a few seconds on CPU, and still leave every backbone
# stage (1/32 of the crop at the deepest) at least one pixel.
TINY_CROP = (32, 32)
# The few networks that need more: LR-ASPP pools its 1/8 map with a fixed 49x49 window (as
# MMSegmentation writes it), so its input must be at least 392 pixels a side.
LARGER_CROPS = {"LRASPPHead": (400, 400)}


# datasets whose configs name their folder as data_prefix (MMPretrain's MNIST config)
PREFIX_IS_THE_ROOT = {"MNIST", "FashionMNIST"}


def _sizes(crop: tuple[int, int]) -> dict[str, tuple[str, tuple[int, int]]]:
    """The pipeline steps whose sizes shrink, and to what (resize to twice the crop wide)."""
    resized = (2 * crop[1], crop[0])
    return {
        "RandomResize": ("scale", resized),
        "Resize": ("scale", resized),
        "RandomCrop": ("crop_size", crop),
        "Pad": ("size", crop),
    }


def crop_for(cfg: Config) -> tuple[int, int]:
    """The crop a config's model trains on here: TINY_CROP unless it needs more."""
    kinds = {part.get("type") for part in dicts_in(cfg.model)}
    return max([TINY_CROP] + [LARGER_CROPS[k] for k in kinds if k in LARGER_CROPS])


def shrink(cfg: Config, data_root: Path) -> None:
    """Batch 2, no workers, two iterations, validation once, data from ``data_root``."""
    crop = crop_for(cfg)
    for loader in dataloaders(cfg):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        _point_at_tiny_data(cfg, loader.dataset, data_root, crop)
    _shrink_model(cfg, crop)
    cfg.train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
    _drop_late_schedulers(cfg)
    cfg.default_hooks = dict(
        cfg.get("default_hooks") or {}, logger=dict(type="LoggerHook", interval=1)
    )


def dataloaders(cfg: Config) -> list:
    """Every dataloader section: the ``*_dataloader`` keys (train/val/test and others, such
    as a retriever config's query and gallery loaders), those of custom hooks (DeepCluster's
    ``extract_dataloader``) and the dataloader configs inside the model (a retriever's
    ``prototype``: a copy of the gallery loader, not a reference)."""
    loaders = [cfg[k] for k in cfg if k.endswith("_dataloader") and cfg[k] is not None]
    loaders += [
        hook[k]
        for hook in cfg.get("custom_hooks") or []
        for k in hook
        if k.endswith("_dataloader") and isinstance(hook[k], dict)
    ]
    loaders += [
        part
        for part in dicts_in(cfg.get("model"))
        if isinstance(part.get("dataset"), dict) and "type" not in part
    ]
    return loaders


def _drop_late_schedulers(cfg: Config) -> None:
    """Schedulers that begin after the two iterations never act on them (and a cosine that
    begins at epoch 20 cannot end within a 2-iteration run): leave them out."""
    schedulers = cfg.get("param_scheduler")
    if schedulers is None:
        return
    listed = schedulers if isinstance(schedulers, list) else [schedulers]
    kept = [s for s in listed if s.get("begin", 0) < 2]
    cfg.param_scheduler = kept if isinstance(schedulers, list) else (kept[0] if kept else None)


def _point_at_tiny_data(cfg: Config, dataset: dict, data_root: Path, crop: tuple[int, int]) -> None:
    """Write (once) and read the dataset's tiny twin; recurse into the parts of a
    ConcatDataset and into the dataset a RepeatDataset repeats."""
    kind = dataset.type.rsplit(".", 1)[-1]  # MMSelfSup's configs say 'mmcls.ImageNet'
    if kind == "ConcatDataset":
        for part in dataset.datasets:
            _point_at_tiny_data(cfg, part, data_root, crop)
        return
    if kind == "RepeatDataset":
        dataset.times = 1  # two iterations need no repeats
        _point_at_tiny_data(cfg, dataset.dataset, data_root, crop)
        return
    if kind not in WRITERS:
        pytest.fail(
            f"{cfg.filename}: no tiny-data writer for dataset type {kind!r}; add one to WRITERS"
        )
    if WRITERS[kind] is not None:
        root = data_root / kind
        if not root.exists():
            WRITERS[kind](root)
        dataset.data_root = str(root)
        if kind in PREFIX_IS_THE_ROOT:
            dataset.data_prefix = ""
    else:
        dataset.num_samples = 4
    if "decode_head" not in cfg.model:
        return  # classification sizes are the caller's (tests/upstream/test_cls_zoo_train.py)
    for step in dataset.get("pipeline") or []:
        key, size = _sizes(crop).get(step.get("type"), (None, None))
        if key is not None and step.get(key) is not None:
            step[key] = size


def _shrink_model(cfg: Config, crop: tuple[int, int]) -> None:
    """No pretrained download, and the model's own sizes fit the tiny data."""
    model = cfg.model
    if "pretrained" in model:
        model.pretrained = None
    for part in dicts_in(model):
        init = part.get("init_cfg")
        if isinstance(init, dict) and init.get("type") == "Pretrained":
            part.init_cfg = None
    preprocessor = model.get("data_preprocessor")
    if preprocessor is not None and preprocessor.get("size") is not None:
        preprocessor.size = crop
    _shrink_vit(model)
    backbone = model.get("backbone") or {}
    if "decode_head" in model and backbone.get("img_size") is not None:
        # a segmentation transformer sized for its crop (BEiT's relative position bias is
        # one table per patch grid): the grid of the tiny crop
        backbone.img_size = crop
    test_cfg = model.get("test_cfg")
    if test_cfg is not None and test_cfg.get("mode") == "slide":
        # several windows per image, each still 32 pixels: a stride-32 network (ConvNeXt,
        # Swin) needs that much, upstream as in vistra
        test_cfg.update(crop_size=crop, stride=tuple(2 * c // 3 for c in crop))


# ViT-Base (768 wide, 12 layers) at 224 px is slow on CPU, and ~40x slower under bf16
# autocast (the AMP configs) without AVX-512: two layers of width 64 keep every code path.
TINY_VIT = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)


def _shrink_vit(model: dict) -> None:
    backbone = model.get("backbone") or {}
    if backbone.get("type") not in ("VisionTransformer", "MAEViT"):
        return
    if backbone.get("arch") not in ("b", "base"):
        return
    backbone.arch = dict(TINY_VIT)
    if backbone.get("frozen_stages", -1) >= 12:  # a linear probe freezes every layer
        backbone.frozen_stages = TINY_VIT["num_layers"]
    for part in dicts_in(model):
        for key in ("in_channels", "input_features", "embed_dim"):
            if part.get(key) == 768:
                part[key] = TINY_VIT["embed_dims"]
    neck = model.get("neck") or {}
    if neck.get("type") == "MAEPretrainDecoder":
        neck.update(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


def dicts_in(node):
    """Every dict nested in ``node`` (dicts and lists), ``node`` included."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from dicts_in(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from dicts_in(value)


def train_tiny(cfg: Config, tmp_path: Path) -> Runner:
    """Shrink ``cfg``, train its two iterations (validating once) and return the runner."""
    cfg.work_dir = str(tmp_path / "work")
    cfg.launcher = "none"
    shrink(cfg, tmp_path / "data")
    runner = Runner.from_config(cfg)
    try:
        runner.train()
    finally:
        logging.getLogger("vistra").handlers.clear()
    assert runner.iter == 2
    scalars = (Path(runner.log_dir) / "vis_data" / "scalars.json").read_text().splitlines()
    # two train lines and one validation line (pre-training configs have no validation)
    assert len(scalars) >= (3 if cfg.get("val_dataloader") is not None else 2)
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
    return runner
