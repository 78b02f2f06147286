"""The smallest classifier run the engine tests share: a one-stage ResNet_CIFAR on 16-px
in-memory shapes (3 classes, 8 training and 4 validation images, batch 4), and a fixture
that runs a test module on one thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch


def tiny_classifier_cfg(
    work_dir: Path, max_epochs: int = 2, train_samples: int = 8, **top: Any
) -> dict:
    """A classifier config on in-memory shapes; ``top`` replaces top-level keys."""

    def loader(split: str, n: int, shuffle: bool) -> dict:
        dataset = dict(
            type="ShapesDataset", num_samples=n, num_classes=3, img_size=16, seed=0, split=split
        )
        return dict(
            batch_size=4,
            num_workers=0,
            dataset=dict(dataset, pipeline=[dict(type="PackInputs")]),
            sampler=dict(type="DefaultSampler", shuffle=shuffle),
        )

    backbone = dict(
        type="ResNet_CIFAR",
        depth=18,
        num_stages=1,
        strides=(1,),
        dilations=(1,),
        stem_channels=8,
        base_channels=8,
        out_indices=(0,),
    )
    cfg = dict(
        work_dir=str(work_dir),
        model=dict(
            type="ImageClassifier",
            backbone=backbone,
            neck=dict(type="GlobalAveragePooling"),
            head=dict(type="LinearClsHead", num_classes=3, in_channels=8, topk=(1,)),
            data_preprocessor=dict(num_classes=3, mean=[127.5] * 3, std=[64.0] * 3, to_rgb=True),
        ),
        train_dataloader=loader("train", train_samples, True),
        val_dataloader=loader("val", 4, False),
        val_evaluator=dict(type="Accuracy", topk=(1,)),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=1, draw_curves=False)),
        randomness=dict(seed=0),
    )
    cfg.update(top)
    return cfg


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Import into a test module to run it on one thread: on a shared machine one thread
    is several times faster for tiny models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
