"""Segmentation data throughput.

1. Images/s per core of the Cityscapes training pipeline (configs/_base_/datasets/
   cityscapes.py: load, annotations, RandomResize, RandomCrop with cat_max_ratio, flip,
   PhotoMetricDistortion, pack) on generated 2048x1024 images, in one process.
2. The share of step time spent waiting for data in the segmentation quickstart
   (configs/quickstart/seg_shapes.py), from the run's own data_time/time records
   (target under 10%).

    python benchmarks/seg_pipeline.py [--images 6] [--passes 2] [--iters 100]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vistra.config import Config
from vistra.registry import DATASETS

REPO = Path(__file__).resolve().parents[1]


def write_cityscapes(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    img_dir = root / "leftImg8bit" / "train" / "city"
    ann_dir = root / "gtFine" / "train" / "city"
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    for i in range(n):
        # smooth-ish content so PNG decoding costs what a photo costs, not pure noise
        small = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((2048, 1024), Image.BILINEAR)
        img.save(img_dir / f"city_{i:06d}_000019_leftImg8bit.png")
        labels = rng.integers(0, 19, (32, 64), dtype=np.uint8)
        labels[rng.random((32, 64)) < 0.1] = 255
        Image.fromarray(labels).resize((2048, 1024), Image.NEAREST).save(
            ann_dir / f"city_{i:06d}_000019_gtFine_labelTrainIds.png"
        )


def pipeline_throughput(n_images: int, passes: int) -> float:
    cfg = Config.fromfile(REPO / "configs" / "_base_" / "datasets" / "cityscapes.py")
    with tempfile.TemporaryDirectory() as tmp:
        write_cityscapes(Path(tmp), n_images)
        dataset_cfg = dict(cfg.train_dataloader.dataset)
        dataset_cfg["data_root"] = tmp
        dataset = DATASETS.build(dataset_cfg)
        dataset[0]  # warm up imports and caches
        start = time.perf_counter()
        for _ in range(passes):
            for i in range(len(dataset)):
                dataset[i]
        elapsed = time.perf_counter() - start
    return passes * len(dataset) / elapsed


def data_wait_share(iters: int) -> tuple[float, float, float]:
    from vistra.engine.runner import Runner

    cfg = Config.fromfile(REPO / "configs" / "quickstart" / "seg_shapes.py")
    with tempfile.TemporaryDirectory() as tmp:
        cfg.work_dir = tmp
        cfg.launcher = "none"
        cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=10**9)
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        cfg.default_hooks = dict(
            cfg.default_hooks,
            checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=10**9, save_last=False),
        )
        cfg.log_level = "WARNING"
        runner = Runner.from_config(cfg)
        runner.train()
        logging.getLogger("vistra").handlers.clear()
        hub = runner.message_hub
        skip = 5  # first iterations pay one-off costs
        data = list(hub.get_scalar("train/data_time")._values)[skip:]
        total = list(hub.get_scalar("train/time")._values)[skip:]
    return sum(data) / sum(total), sum(data) / len(data), sum(total) / len(total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100)
    args = parser.parse_args(argv)
    ips = pipeline_throughput(args.images, args.passes)
    print(f"Cityscapes training pipeline, 2048x1024 inputs: {ips:.2f} images/s per core")
    share, data_s, step_s = data_wait_share(args.iters)
    print(
        f"seg quickstart: waiting for data {share * 100:.1f}% of step time "
        f"({data_s * 1000:.1f} ms of {step_s * 1000:.1f} ms per step; target under 10%)"
    )
    return 0 if share < 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
