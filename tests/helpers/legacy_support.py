"""The 0.x configs of tests/data/legacy_configs, their 1.x twins, and a way to shrink a 0.x
config (in its own 0.x schema) onto tiny generated data so that the real CLI trains it for
two iterations in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake_data import write_ade20k, write_cifar10, write_cityscapes, write_imagenet_like

from vistra.config import Config

REPO = Path(__file__).resolve().parents[2]
LEGACY = REPO / "tests" / "data" / "legacy_configs"

# 0.x config -> the hand-written 1.x config of the same model
TWINS = {
    "mmseg/pspnet/pspnet_r50-d8_512x1024_40k_cityscapes.py": (
        "configs/pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py"
    ),
    "mmseg/pspnet/pspnet_r50-d8_512x512_80k_ade20k.py": (
        "configs/pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py"
    ),
    "mmseg/deeplabv3/deeplabv3_r50-d8_512x1024_40k_cityscapes.py": (
        "configs/deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py"
    ),
    "mmseg/deeplabv3/deeplabv3_r50-d8_512x512_80k_ade20k.py": (
        "configs/deeplabv3/deeplabv3_r50-d8_4xb4-80k_ade20k-512x512.py"
    ),
    "mmcls/resnet/resnet18_b16x8_cifar10.py": "configs/resnet/resnet18_8xb16_cifar10.py",
    "mmselfsup/selfsup/mae/mae_vit-base-p16_8xb512-coslr-400e_in1k.py": (
        "configs/selfsup/mae/mae_vit-base-p16_8xb512-coslr-400e_in1k.py"
    ),
}

SEG_WRITERS = {"CityscapesDataset": write_cityscapes, "ADE20KDataset": write_ade20k}
TINY_SEG = {"img_scale": (64, 32), "crop_size": (32, 32), "size": (32, 32)}
TINY_VIT = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)


def legacy_path(name: str) -> Path:
    return LEGACY / name


def shrink_legacy(cfg: Config, data_root: Path) -> None:
    """Two iterations on tiny data, validation at the end, a checkpoint every iteration:
    all written with 0.x keys, as a 0.x user would."""
    data = cfg.data
    data.update(samples_per_gpu=2, workers_per_gpu=0)
    for split in ("train", "val", "test"):
        if data.get(split) is not None:
            _point_at_tiny_data(cfg, data[split], data_root)
    if "persistent_workers" in cfg:
        cfg.persistent_workers = False
    if str(cfg.runner.get("type", "")).startswith("IterBased"):
        cfg.runner.max_iters = 2
        cfg.evaluation = dict(cfg.get("evaluation") or {}, interval=2)
    else:
        _shrink_epochs(cfg, data)
    cfg.checkpoint_config = dict(cfg.get("checkpoint_config") or {}, interval=1)
    cfg.log_config = dict(cfg.get("log_config") or {}, interval=1)
    _shrink_model(cfg.model)


def _shrink_epochs(cfg: Config, data: Any) -> None:
    """Epoch runners: one or two epochs of one or two iterations each."""
    if cfg.model.type == "MAE":  # 2 images, batch 2: 1 iteration per epoch, 2 epochs
        cfg.runner.max_epochs = 2
        cfg.lr_config.warmup_iters = 1  # epochs (warmup_by_epoch)
    else:  # CIFAR-10: 5 training images, batch 3: 2 iterations
        data.samples_per_gpu = 3
        cfg.runner.max_epochs = 1
    if cfg.get("evaluation") is not None:
        cfg.evaluation.interval = 1


def _point_at_tiny_data(cfg: Config, dataset: Any, data_root: Path) -> None:
    kind = dataset.type
    if kind in SEG_WRITERS:
        root = data_root / kind
        if not root.exists():
            SEG_WRITERS[kind](root)
        dataset.data_root = str(root)
        for step in _steps(dataset.pipeline):
            for key, size in TINY_SEG.items():
                if step.get(key) is not None:
                    step[key] = size
    elif kind == "CIFAR10":
        root = data_root / "cifar10"
        if not root.exists():
            write_cifar10(root, n=1)
        dataset.data_prefix = str(root)
    elif "data_source" in dataset:
        root = data_root / "imagenet"
        if not root.exists():
            write_imagenet_like(root, n_train=2)
        dataset.data_source.data_prefix = str(root / "train")
        dataset.data_source.ann_file = str(root / "meta" / "train.txt")
    else:
        raise AssertionError(f"no tiny data for dataset type {kind!r}")


def _steps(pipeline: list) -> Any:
    for step in pipeline:
        yield step
        yield from _steps(step.get("transforms") or [])


def _shrink_model(model: Any) -> None:
    if "pretrained" in model:
        model.pretrained = None
    backbone = model.get("backbone") or {}
    if backbone.get("type") == "MAEViT" and backbone.get("arch") in ("b", "base"):
        backbone.arch = dict(TINY_VIT)
        model.neck.update(embed_dim=64, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


def write_tiny_legacy(name: str, tmp_path: Path) -> Path:
    """The 0.x config ``name`` shrunk and written (0.x schema, flattened) under tmp_path."""
    cfg = Config.fromfile(legacy_path(name))
    shrink_legacy(cfg, tmp_path / "data")
    out = tmp_path / Path(name).name
    cfg.dump(out)
    return out
