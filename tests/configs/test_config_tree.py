"""Every config under configs/ (except _base_ files) builds its model, trains two
iterations and runs one validation pass on tiny generated data of the right format."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from fake_data import write_cifar10, write_imagenet_like

from vistra.config import Config
from vistra.engine.runner import Runner

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.py") if "_base_" not in p.parts)

# dataset type -> writer of tiny data in its on-disk format (None: rendered in memory)
WRITERS = {
    "ImageNet": write_imagenet_like,
    "CustomDataset": write_imagenet_like,
    "CIFAR10": write_cifar10,
    "ShapesDataset": None,
    "ShapesSegDataset": None,
}


def _shrink(cfg: Config, data_root: Path) -> None:
    """Batch 2, no workers, two iterations, validation once, data from ``data_root``."""
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(key)
        if loader is None:
            continue
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        dataset = loader.dataset
        kind = dataset.type
        if kind not in WRITERS:
            pytest.fail(f"{cfg.filename}: no tiny-data writer for dataset type {kind!r}; add one to WRITERS")
        if WRITERS[kind] is not None:
            root = data_root / kind
            if not root.exists():
                WRITERS[kind](root)
            dataset.data_root = str(root)
        else:
            dataset.num_samples = 4
    cfg.train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
    cfg.default_hooks = dict(cfg.get("default_hooks") or {}, logger=dict(type="LoggerHook", interval=1))


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_trains_two_iterations_and_validates(path, tmp_path):
    cfg = Config.fromfile(path)
    cfg.work_dir = str(tmp_path / "work")
    cfg.launcher = "none"
    _shrink(cfg, tmp_path / "data")
    runner = Runner.from_config(cfg)
    try:
        runner.train()
    finally:
        logging.getLogger("vistra").handlers.clear()
    assert runner.iter == 2
    scalars = (Path(runner.log_dir) / "vis_data" / "scalars.json").read_text().splitlines()
    assert len(scalars) >= 3  # two train lines and one validation line
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
