"""MMSegmentation's layer-decay optimizer constructors: every parameter's lr and weight decay
(and its group) in vistra equal upstream's, for the zoo configs that use them.

The oracle (tools/upstream/oracle_optim.py) builds each config's model and optimizer with
MMSegmentation/MMEngine; here vistra builds the same config file's model (on CPU, no
forward) and its optimizer through ``build_optim_wrapper``.
"""

from __future__ import annotations

import math

import pytest
import torch
from numeric_support import build_vistra_model
from oracle_support import config_tree, run_oracle_json

from vistra.config import Config
from vistra.engine.optim import build_optim_wrapper

CONFIGS = {
    "convnext-stage-wise": "convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py",
    "beit-layer-decay": "beit/beit-base_upernet_8xb2-160k_ade20k-640x640.py",
    "mae-layer-decay": "mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py",
}


@pytest.fixture(scope="module")
def upstream() -> dict[str, dict]:
    tree = config_tree("mmseg")
    paths = [str(tree / rel) for rel in CONFIGS.values()]
    result = run_oracle_json("optim", "groups", *paths)
    return {rel: result[str(tree / rel)] for rel in CONFIGS.values()}


def vistra_groups(rel: str) -> dict[str, dict]:
    path = config_tree("mmseg") / rel
    try:
        model = build_vistra_model(path)
    except Exception as exc:
        if "beit" in rel or "mae" in rel:  # their backbones are being written
            pytest.skip(f"vistra cannot build {rel} yet: {exc}")
        raise
    optim_cfg = dict(Config.fromfile(str(path))["optim_wrapper"])
    if optim_cfg.get("type") == "AmpOptimWrapper":  # as the oracle: AMP needs a GPU there
        optim_cfg["type"] = "OptimWrapper"
        optim_cfg.pop("loss_scale", None)
    with pytest.warns(DeprecationWarning) if "LayerDecay" in optim_cfg["constructor"] else _no():
        wrapper = build_optim_wrapper(model, optim_cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]: {
            "lr": g["lr"],
            "weight_decay": g.get("weight_decay"),
            "lr_scale": g.get("lr_scale"),
            "group_name": g.get("group_name"),
        }
        for g in wrapper.optimizer.param_groups
        for p in g["params"]
    }


class _no:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("rel", list(CONFIGS.values()), ids=list(CONFIGS))
def test_param_groups_match_upstream(upstream: dict[str, dict], rel: str) -> None:
    expected = upstream[rel]
    assert "error" not in expected, expected
    got = vistra_groups(rel)
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        have = got[name]
        assert have["group_name"] == want["group_name"], name
        for key in ("lr", "weight_decay", "lr_scale"):
            assert math.isclose(have[key], want[key], rel_tol=1e-12, abs_tol=0.0), (name, key)


# ---------------------------------------------------------------------- no oracle: rules, errors
def _toy_model(backbone_name: str) -> torch.nn.Module:
    """Parameter names as ConvNeXt's (``downsample_layers.{i}``, ``stages.{i}.{j}``)."""
    backbone = type(backbone_name, (torch.nn.Module,), {})()
    backbone.downsample_layers = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(4))
    backbone.stages = torch.nn.ModuleList(
        torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(n)) for n in (1, 1, 7, 1)
    )
    model = torch.nn.Module()
    model.backbone = backbone
    model.decode_head = torch.nn.Conv2d(2, 2, 1)
    return model


def _groups(model: torch.nn.Module, paramwise_cfg: dict) -> dict[str, tuple[str, float, float]]:
    cfg = dict(
        optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.5),
        constructor="LearningRateDecayOptimizerConstructor",
        paramwise_cfg=paramwise_cfg,
    )
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]: (g["group_name"], g["lr"], g["weight_decay"])
        for g in build_optim_wrapper(model, cfg).optimizer.param_groups
        for p in g["params"]
    }


def test_convnext_layer_wise_ids() -> None:
    # num_layers=12: ids 0..12 in the backbone, 13 outside; lr = 0.5 ** (14 - id - 1)
    got = _groups(_toy_model("ConvNeXt"), dict(num_layers=12, decay_rate=0.5))
    expected_ids = {
        "backbone.downsample_layers.0.weight": 0,
        "backbone.downsample_layers.1.weight": 2,
        "backbone.downsample_layers.2.weight": 3,
        "backbone.downsample_layers.3.weight": 12,
        "backbone.stages.0.0.weight": 1,
        "backbone.stages.1.0.weight": 2,
        "backbone.stages.2.0.weight": 3,
        "backbone.stages.2.5.weight": 4,
        "backbone.stages.2.6.weight": 5,
        "backbone.stages.3.0.weight": 12,
        "decode_head.weight": 13,
    }
    for name, layer_id in expected_ids.items():
        assert got[name] == (f"layer_{layer_id}_decay", 0.5 ** (13 - layer_id), 0.5), name
    assert got["backbone.stages.2.6.bias"] == ("layer_5_no_decay", 0.5**8, 0.0)


def test_bad_paramwise_cfg_messages() -> None:
    model = _toy_model("ConvNeXt")
    with pytest.raises(ValueError, match=r"decay_type='stagewise': valid: layer_wise"):
        _groups(model, dict(num_layers=6, decay_rate=0.9, decay_type="stagewise"))
    with pytest.raises(ValueError, match="paramwise_cfg.num_layers"):
        _groups(model, dict(decay_rate=0.9))
    with pytest.raises(NotImplementedError, match="supports ConvNeXt backbones, not ResNet"):
        _groups(_toy_model("ResNet"), dict(num_layers=6, decay_rate=0.9, decay_type="stage_wise"))
    with pytest.raises(KeyError, match="layer_decay_rate"):
        build_optim_wrapper(
            model,
            dict(
                optimizer=dict(type="AdamW", lr=1.0),
                constructor="LayerDecayOptimizerConstructor",
                paramwise_cfg=dict(num_layers=12),
            ),
        )
