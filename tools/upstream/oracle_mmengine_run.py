"""A real, tiny MMEngine training run, so that vistra can be shown to read what it writes.

``oracle.py mmengine_run OUTDIR [--epochs N]``
    writes a few generated images in MMPretrain's ``CustomDataset`` folder layout under
    ``OUTDIR/data/{train,val}/<class>/*.png``, then trains an MMPretrain ``ImageClassifier``
    (a narrow ``ResNet_CIFAR``-18, ``GlobalAveragePooling``, ``LinearClsHead``) with
    MMEngine's own ``Runner`` for ``N`` epochs (default 2) on CPU, SGD with momentum and a
    ``LinearLR`` warm-up followed by a ``MultiStepLR``. MMEngine's ``CheckpointHook`` writes
    ``OUTDIR/work/epoch_1.pth`` ... ``epoch_N.pth`` exactly as any MMEngine run does.

    Prints JSON: ``{"work_dir", "data_root", "checkpoints": [...], "config": {...}}`` where
    ``config`` holds the model/optimizer/scheduler settings used (so the vistra-side test
    builds the same model) and, per checkpoint, its top-level keys, ``meta`` epoch/iter and
    the module paths of every global the file pickles (found with ``pickletools``).

Runs in 10-20 s on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import os
import pickletools
import sys
import zipfile

NUM_CLASSES = 2
IMG_SIZE = 32
MODEL = dict(
    type="ImageClassifier",
    backbone=dict(
        type="ResNet_CIFAR", depth=18, stem_channels=8, base_channels=8, out_indices=(3,)
    ),
    neck=dict(type="GlobalAveragePooling"),
    head=dict(
        type="LinearClsHead",
        num_classes=NUM_CLASSES,
        in_channels=64,
        loss=dict(type="CrossEntropyLoss", loss_weight=1.0),
        topk=(1,),
    ),
)
DATA_PREPROCESSOR = dict(
    num_classes=NUM_CLASSES, mean=[127.5, 127.5, 127.5], std=[64.0, 64.0, 64.0], to_rgb=True
)
OPTIMIZER = dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=1e-4)
PARAM_SCHEDULER = [
    dict(type="LinearLR", start_factor=0.5, by_epoch=False, begin=0, end=3),
    dict(type="MultiStepLR", by_epoch=True, milestones=[1], gamma=0.1),
]
BATCH_SIZE = 4
NUM_TRAIN = 8  # 2 iterations per epoch


def write_images(root: str) -> None:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for split, count in (("train", NUM_TRAIN), ("val", 4)):
        for i in range(count):
            label = i % NUM_CLASSES
            folder = os.path.join(root, split, f"class{label}")
            os.makedirs(folder, exist_ok=True)
            img = rng.integers(0, 60, (IMG_SIZE, IMG_SIZE, 3), dtype=np.uint8)
            img[8:24, 8:24, label] = 220  # a square whose colour tells the class
            cv2.imwrite(os.path.join(folder, f"{i}.png"), img)


def build_cfg(data_root: str, work_dir: str, epochs: int):
    from mmengine.config import Config

    pipeline = [dict(type="LoadImageFromFile"), dict(type="PackInputs")]

    def loader(split: str, shuffle: bool) -> dict:
        return dict(
            batch_size=BATCH_SIZE,
            num_workers=0,
            dataset=dict(
                type="CustomDataset", data_root=data_root, data_prefix=split, pipeline=pipeline
            ),
            sampler=dict(type="DefaultSampler", shuffle=shuffle),
        )

    return Config(
        dict(
            default_scope="mmpretrain",
            model=MODEL,
            data_preprocessor=DATA_PREPROCESSOR,
            train_dataloader=loader("train", True),
            val_dataloader=loader("val", False),
            val_evaluator=dict(type="Accuracy", topk=(1,)),
            optim_wrapper=dict(optimizer=OPTIMIZER),
            param_scheduler=PARAM_SCHEDULER,
            train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=1),
            val_cfg=dict(),
            default_hooks=dict(
                timer=dict(type="IterTimerHook"),
                logger=dict(type="LoggerHook", interval=1),
                param_scheduler=dict(type="ParamSchedulerHook"),
                checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=-1),
                sampler_seed=dict(type="DistSamplerSeedHook"),
            ),
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo")),
            log_level="WARNING",
            randomness=dict(seed=0),
            work_dir=work_dir,
            launcher="none",
        )
    )


def pickled_globals(path: str) -> list[str]:
    """``module.name`` of every GLOBAL/STACK_GLOBAL in a torch zip checkpoint's data.pkl."""
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        data = zf.read(name)
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add(f"{strings[-2]}.{strings[-1]}")
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(None)  # memo fetches: the pair may come from the memo
    return sorted(g for g in found if "None" not in g)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="oracle.py mmengine_run")
    parser.add_argument("outdir")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    import oracle_env

    oracle_env.register_all("mmpretrain")
    from mmengine.runner import Runner

    out = os.path.abspath(args.outdir)
    data_root, work_dir = os.path.join(out, "data"), os.path.join(out, "work")
    write_images(data_root)
    stdout = os.dup(1)  # MMEngine logs to stdout: send it to stderr, keep stdout for JSON
    os.dup2(2, 1)
    try:
        runner = Runner.from_cfg(build_cfg(data_root, work_dir, args.epochs))
        runner.train()
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)

    checkpoints = []
    for epoch in range(1, args.epochs + 1):
        path = os.path.join(work_dir, f"epoch_{epoch}.pth")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        checkpoints.append(
            dict(
                path=path,
                keys=sorted(ckpt),
                epoch=ckpt["meta"]["epoch"],
                iter=ckpt["meta"]["iter"],
                globals=pickled_globals(path),
            )
        )
    config = dict(
        model=MODEL,
        data_preprocessor=DATA_PREPROCESSOR,
        optimizer=OPTIMIZER,
        param_scheduler=PARAM_SCHEDULER,
        batch_size=BATCH_SIZE,
        num_train=NUM_TRAIN,
        img_size=IMG_SIZE,
        epochs=args.epochs,
    )
    json.dump(
        dict(work_dir=work_dir, data_root=data_root, checkpoints=checkpoints, config=config),
        sys.stdout,
    )
    return 0
