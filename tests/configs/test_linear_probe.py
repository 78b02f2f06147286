"""The MAE linear-probe config trains the neck and head only: two real training steps leave
every backbone weight as it was and change the classifier."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from vistra.config import Config
from vistra.dist import unwrap
from vistra.engine.runner import Runner

REPO = Path(__file__).resolve().parents[2]
LINEAR = [
    REPO / "configs/selfsup/mae/benchmarks/vit-base-p16_linear-8xb2048-coslr-90e_in1k.py",
    REPO / "configs/mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py",
]


def small_probe(path: Path, work_dir: Path) -> Config:
    """The config with a 2-layer ViT (all layers frozen) and in-memory shapes data."""
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.frozen_stages == 12 and cfg.model.backbone.out_type == "cls_token"
    assert cfg.model.neck.type == "ClsBatchNormNeck"
    assert cfg.optim_wrapper.optimizer.type == "LARS"
    cfg.model.backbone.update(
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=32,
        patch_size=8,
        frozen_stages=2,
        init_cfg=None,
    )
    cfg.model.neck.input_features = 32
    cfg.model.head.update(in_channels=32, num_classes=3)
    cfg.data_preprocessor.num_classes = 3
    for key, split in (("train_dataloader", "train"), ("val_dataloader", "val")):
        cfg[key].update(batch_size=4, num_workers=0, persistent_workers=False)
        cfg[key].dataset = dict(
            type="ShapesDataset",
            num_samples=8,
            num_classes=3,
            img_size=32,
            split=split,
            pipeline=[dict(type="PackInputs")],
        )
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator = cfg.test_evaluator = dict(type="Accuracy", topk=(1,))
    cfg.train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=100)
    cfg.work_dir = str(work_dir)
    cfg.launcher = "none"
    return cfg


@pytest.mark.parametrize("path", LINEAR, ids=lambda p: p.name)
def test_linear_probe_freezes_the_backbone(path, tmp_path):
    runner = Runner.from_config(small_probe(path, tmp_path / "work"))
    model = unwrap(runner.model)
    model.init_weights()  # what train() would do first; a second call is a no-op
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        runner.train()
    finally:
        logging.getLogger("vistra").handlers.clear()
    assert runner.iter == 2
    after = unwrap(runner.model).state_dict()
    backbone = [k for k in before if k.startswith("backbone.")]
    assert len(backbone) > 20
    changed = [k for k in backbone if not torch.equal(before[k], after[k])]
    assert not changed, f"frozen backbone weights changed: {changed}"
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.train()  # frozen layers stay in eval mode (no dropout, no drop path)
    assert not any(m.training for layer in model.backbone.layers for m in layer.modules())
    assert model.neck.bn.training and model.head.training
    for key in ("head.layers.head.weight", "head.layers.head.bias", "neck.bn.running_mean"):
        assert not torch.equal(before[key], after[key]), key
    assert "neck.bn.weight" not in after  # affine=False, as MAE's probe
