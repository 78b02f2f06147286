"""Layer-wise lr decay of the MAE fine-tuning config, on the real (small) ViT classifier."""

from __future__ import annotations

from pathlib import Path

import pytest

from vistra.config import Config
from vistra.engine.optim import build_optim_wrapper
from vistra.registry import MODELS

REPO = Path(__file__).resolve().parents[2]
FINE_TUNE = [
    REPO / "configs/selfsup/mae/benchmarks/vit-base-p16_ft-8xb128-coslr-100e_in1k.py",
    REPO / "configs/mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py",
]
NUM_LAYERS = 3


def small_model(cfg: Config):
    """The config's ImageClassifier with a 3-layer ViT of width 32 (same parameter names)."""
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model)
    model_cfg["backbone"].update(
        arch=dict(embed_dims=32, num_layers=NUM_LAYERS, num_heads=2, feedforward_channels=64),
        img_size=32,
        patch_size=8,
        init_cfg=None,
    )
    model_cfg["head"].update(in_channels=32, num_classes=5)
    model_cfg["data_preprocessor"] = dict(cfg.data_preprocessor, num_classes=5)
    return MODELS.build(model_cfg)


def expected_layer(name: str) -> int:
    """MMPretrain's ViT depths: embeddings 0, block i -> i + 1, the rest L + 1."""
    if name.startswith(("backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed")):
        return 0
    if name.startswith("backbone.layers."):
        return int(name.split(".")[2]) + 1
    return NUM_LAYERS + 1


@pytest.mark.parametrize("path", FINE_TUNE, ids=lambda p: p.name)
def test_fine_tune_config_decays_lr_per_block(path):
    cfg = Config.fromfile(path)
    assert cfg.optim_wrapper.constructor == "LearningRateDecayOptimWrapperConstructor"
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    model = small_model(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper.to_dict())
    groups = {g["param_name"]: g for g in wrapper.optimizer.param_groups}
    params = dict(model.named_parameters())
    assert set(groups) == {n for n, p in params.items() if p.requires_grad}
    base_lr, base_wd = 2e-3, 0.05
    for name, group in groups.items():
        layer = expected_layer(name)
        assert group["layer_id"] == layer, name
        # lr * rate ** (num_layers + 1 - layer_id): the head keeps lr, block 0 the least
        assert group["lr"] == pytest.approx(base_lr * 0.65 ** (NUM_LAYERS + 1 - layer)), name
        no_decay = params[name].ndim == 1 or name in ("backbone.cls_token", "backbone.pos_embed")
        assert group["weight_decay"] == pytest.approx(0.0 if no_decay else base_wd), name
    # every kind of parameter is covered: tokens, norms, biases, attention/FFN weights, head
    for name in (
        "backbone.cls_token",
        "backbone.pos_embed",
        "backbone.patch_embed.projection.weight",
        "backbone.layers.0.ln1.weight",
        "backbone.layers.2.attn.qkv.bias",
        "backbone.layers.2.ffn.layers.1.weight",
        "backbone.ln2.weight",  # the avg_featmap norm: after the last block
        "head.fc.weight",
    ):
        assert name in groups, name
    assert groups["backbone.layers.0.attn.qkv.weight"]["lr"] == pytest.approx(base_lr * 0.65**3)
    assert groups["head.fc.weight"]["lr"] == pytest.approx(base_lr)
