"""paramwise_cfg rules of DefaultOptimWrapperConstructor and MMPretrain's layer-wise lr decay."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vistra.engine.optim import OptimWrapper, build_optim_wrapper
from vistra.engine.optim_constructor import (
    DefaultOptimWrapperConstructor,
    LearningRateDecayOptimWrapperConstructor,
    sort_custom_keys,
    vit_layer_depth,
)
from vistra.registry import RegistryError

LR, WD = 0.1, 1e-4


class Net(nn.Module):
    """conv + BN + depth-wise conv in a backbone, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv = nn.Conv2d(3, 4, 3)
        self.backbone.bn = nn.BatchNorm2d(4)
        self.backbone.dw = nn.Conv2d(4, 4, 3, groups=4)
        self.head = nn.Linear(4, 2)


def groups_by_name(
    model: nn.Module, paramwise_cfg: dict | None, optimizer: dict | None = None
) -> dict[str, dict]:
    cfg = dict(
        optimizer=optimizer or dict(type="SGD", lr=LR, momentum=0.9, weight_decay=WD),
        paramwise_cfg=paramwise_cfg,
    )
    wrapper = build_optim_wrapper(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in wrapper.optimizer.param_groups:
        assert len(group["params"]) == 1
        out[names[id(group["params"][0])]] = group
    return out


def lr_wd(groups: dict[str, dict]) -> dict[str, tuple[float, float]]:
    return {
        n: (pytest.approx(g["lr"]), pytest.approx(g["weight_decay"])) for n, g in groups.items()
    }


def test_no_paramwise_cfg_is_one_group():
    wrapper = build_optim_wrapper(Net(), dict(optimizer=dict(type="SGD", lr=LR)))
    assert len(wrapper.optimizer.param_groups) == 1 and wrapper.base_param_settings is None


def test_bias_lr_mult_and_bias_decay_mult():
    g = groups_by_name(Net(), dict(bias_lr_mult=2.0, bias_decay_mult=0.5))
    assert lr_wd(g) == {
        "backbone.conv.weight": (LR, WD),
        "backbone.conv.bias": (2 * LR, 0.5 * WD),
        "backbone.bn.weight": (LR, WD),
        "backbone.bn.bias": (
            LR,
            0.5 * WD,
        ),  # norm biases keep the lr; with no norm rule the bias rule decays them
        "backbone.dw.weight": (LR, WD),
        "backbone.dw.bias": (2 * LR, 0.5 * WD),
        "head.weight": (LR, WD),
        "head.bias": (2 * LR, 0.5 * WD),
    }


def test_norm_then_bias_then_dwconv_then_flat():
    g = groups_by_name(
        Net(),
        dict(norm_decay_mult=0.0, bias_decay_mult=0.5, dwconv_decay_mult=0.2, flat_decay_mult=0.1),
    )
    wd = {n: grp["weight_decay"] for n, grp in g.items()}
    assert wd == pytest.approx(
        {
            "backbone.conv.weight": WD,
            "backbone.conv.bias": 0.5 * WD,
            "backbone.bn.weight": 0.0,
            "backbone.bn.bias": 0.0,
            "backbone.dw.weight": 0.2 * WD,
            "backbone.dw.bias": 0.5 * WD,  # the bias rule comes before the dwconv rule
            "head.weight": WD,
            "head.bias": 0.5 * WD,
        }
    )


def test_dwconv_and_flat_rules_alone():
    g = groups_by_name(Net(), dict(dwconv_decay_mult=0.2))
    assert g["backbone.dw.bias"]["weight_decay"] == pytest.approx(0.2 * WD)
    assert g["backbone.conv.bias"]["weight_decay"] == pytest.approx(WD)
    g = groups_by_name(Net(), dict(flat_decay_mult=0.0))
    flat = {n for n, grp in g.items() if grp["weight_decay"] == 0.0}
    assert flat == {
        "backbone.conv.bias",
        "backbone.bn.weight",
        "backbone.bn.bias",
        "backbone.dw.bias",
        "head.bias",
    }


def test_custom_keys_longest_first_and_override_other_rules():
    keys = {
        "backbone": dict(lr_mult=0.1),
        "backbone.dw": dict(lr_mult=0.5, decay_mult=0.0),
        "bias": dict(lr_mult=3.0),
        "head": dict(lr_mult=7.0),
    }
    assert sort_custom_keys(list(keys)) == ["backbone.dw", "backbone", "bias", "head"]
    g = groups_by_name(Net(), dict(custom_keys=keys, bias_lr_mult=100.0, norm_decay_mult=0.0))
    assert lr_wd(g) == {
        "backbone.conv.weight": (0.1 * LR, WD),
        "backbone.conv.bias": (
            0.1 * LR,
            WD,
        ),  # 'backbone' is longer than 'bias'; bias_lr_mult ignored
        "backbone.bn.weight": (0.1 * LR, WD),  # custom key beats norm_decay_mult
        "backbone.bn.bias": (0.1 * LR, WD),
        "backbone.dw.weight": (0.5 * LR, 0.0),
        "backbone.dw.bias": (0.5 * LR, 0.0),
        "head.weight": (7.0 * LR, WD),
        "head.bias": (3.0 * LR, WD),  # 'bias' < 'head' alphabetically at equal length
    }
    assert g["head.bias"]["lr_mult"] == 3.0  # the custom dict is copied into the group


def test_frozen_params_keep_a_plain_group():
    model = Net()
    model.backbone.conv.requires_grad_(False)
    g = groups_by_name(model, dict(bias_lr_mult=2.0, custom_keys={"backbone": dict(lr_mult=0.5)}))
    assert len(g) == 8  # frozen parameters are still handed to the optimizer, as MMEngine
    assert set(g["backbone.conv.bias"]) == set(g["backbone.conv.weight"])  # no paramwise keys
    assert "lr_mult" not in g["backbone.conv.bias"] and g["backbone.conv.bias"]["lr"] == LR
    assert g["backbone.bn.bias"]["lr"] == pytest.approx(0.5 * LR)


def test_shared_parameters_error_or_bypass():
    model = Net()
    model.tied = nn.Linear(4, 2)
    model.tied.weight = model.head.weight  # a tied weight: one Parameter in two modules
    with pytest.raises(ValueError, match=r"'head.weight' and 'tied.weight'.*bypass_duplicate"):
        groups_by_name(model, dict(bias_lr_mult=2.0))
    wrapper = build_optim_wrapper(
        model, dict(optimizer=dict(type="SGD", lr=LR), paramwise_cfg=dict(bypass_duplicate=True))
    )
    assert (
        sum(len(gr["params"]) for gr in wrapper.optimizer.param_groups) == 9
    )  # tied.weight skipped


def test_config_errors():
    with pytest.raises(RegistryError, match="did you mean 'norm_decay_mult'"):
        groups_by_name(Net(), dict(norm_decay_mul=0.0))
    with pytest.raises(ValueError, match="no weight_decay"):
        groups_by_name(Net(), dict(norm_decay_mult=0.0), optimizer=dict(type="SGD", lr=LR))
    with pytest.raises(TypeError, match=r"custom_keys\['head'\] must be a dict"):
        DefaultOptimWrapperConstructor(
            dict(optimizer=dict(type="SGD", lr=LR)), dict(custom_keys={"head": 0.1})
        )


def test_constructor_called_directly_returns_wrapper():
    ctor = DefaultOptimWrapperConstructor(
        dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=LR)), None
    )
    wrapper = ctor(Net())
    assert isinstance(wrapper, OptimWrapper) and isinstance(wrapper.optimizer, torch.optim.Adam)


# ---------------------------------------------------------------------- layer-wise lr decay
class TinyViT(nn.Module):
    """An MMPretrain-shaped ViT classifier: backbone.{cls_token, pos_embed, patch_embed, layers, ln1}, head."""

    def __init__(self, num_layers: int = 3) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.backbone.pos_embed = nn.Parameter(torch.zeros(1, 5, 8))
        self.backbone.patch_embed = nn.Module()
        self.backbone.patch_embed.projection = nn.Conv2d(3, 8, 2, 2)
        self.backbone.layers = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)) for _ in range(num_layers)
        )
        self.backbone.ln1 = nn.LayerNorm(8)
        self.head = nn.Module()
        self.head.fc = nn.Linear(8, 4)


def decay_groups(model: nn.Module, paramwise_cfg: dict) -> dict[str, dict]:
    cfg = dict(
        optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05),
        constructor="LearningRateDecayOptimWrapperConstructor",
        paramwise_cfg=paramwise_cfg,
    )
    wrapper = build_optim_wrapper(model, cfg)
    return {g["param_name"]: g for g in wrapper.optimizer.param_groups}


def test_vit_layer_decay_lr_and_weight_decay():
    model = TinyViT(num_layers=3)
    model.backbone.layers[0][0].requires_grad_(False)  # frozen: left out, as MMPretrain
    rate = 0.5
    groups = decay_groups(
        model,
        dict(
            layer_decay_rate=rate,
            flat_decay_mult=0.0,
            custom_keys={".cls_token": dict(decay_mult=0.0), ".pos_embed": dict(decay_mult=0.0)},
        ),
    )
    expected_layer = {
        "backbone.cls_token": 0, "backbone.pos_embed": 0,
        "backbone.patch_embed.projection.weight": 0, "backbone.patch_embed.projection.bias": 0,
        "backbone.layers.0.1.weight": 1, "backbone.layers.0.1.bias": 1,
        "backbone.layers.1.0.weight": 2, "backbone.layers.1.0.bias": 2,
        "backbone.layers.1.1.weight": 2, "backbone.layers.1.1.bias": 2,
        "backbone.layers.2.0.weight": 3, "backbone.layers.2.0.bias": 3,
        "backbone.layers.2.1.weight": 3, "backbone.layers.2.1.bias": 3,
        "backbone.ln1.weight": 4, "backbone.ln1.bias": 4, "head.fc.weight": 4, "head.fc.bias": 4,
    }  # fmt: skip
    assert {n: g["layer_id"] for n, g in groups.items()} == expected_layer
    for name, group in groups.items():
        assert group["lr"] == pytest.approx(rate ** (3 + 1 - expected_layer[name])), name
    decayed = {
        "backbone.patch_embed.projection.weight", "backbone.layers.0.1.weight",
        "backbone.layers.1.1.weight", "backbone.layers.2.1.weight", "head.fc.weight",
    }  # fmt: skip
    for (
        name,
        group,
    ) in groups.items():  # tokens via custom_keys, every 1-D param via flat_decay_mult
        assert group["weight_decay"] == pytest.approx(0.05 if name in decayed else 0.0), name


def test_layer_decay_uses_the_models_get_layer_depth():
    class Staged(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)

        def get_layer_depth(self, name: str) -> tuple[int, int]:
            return (0 if name.startswith("a.") else 1), 2

    groups = decay_groups(Staged(), dict(layer_decay_rate=0.1))
    assert groups["a.weight"]["lr"] == pytest.approx(0.1) and groups["b.weight"][
        "lr"
    ] == pytest.approx(1.0)
    assert groups["a.bias"]["weight_decay"] == pytest.approx(0.05)  # no rule configured: base decay


def test_layer_decay_needs_a_depth_rule():
    assert vit_layer_depth("backbone.layers.11.attn.qkv.weight", 12) == (12, 14)
    assert vit_layer_depth("head.fc.weight", 12) == (13, 14)
    with pytest.raises(ValueError, match=r"get_layer_depth.*backbone.layers"):
        decay_groups(Net(), dict(layer_decay_rate=0.5))
    with pytest.raises(RegistryError, match="did you mean 'layer_decay_rate'"):
        LearningRateDecayOptimWrapperConstructor(
            dict(optimizer=dict(type="SGD", lr=1.0)), dict(layer_decay_rat=0.5)
        )


def test_misspelt_delete_marker_is_ignored_with_a_warning_other_unknown_keys_fail():
    # MMPretrain's Twins configs: paramwise_cfg=dict(_delete=True, norm_decay_mult=0.0, ...)
    with pytest.warns(UserWarning, match="'_delete' ignored .*merge marker '_delete_'"):
        g = groups_by_name(Net(), dict(_delete=True, bias_decay_mult=0.5))
    assert g["backbone.conv.bias"]["weight_decay"] == pytest.approx(0.5 * WD)
    with pytest.raises(
        RegistryError, match="unknown optim_wrapper.paramwise_cfg key 'bias_decay_multi'"
    ):
        groups_by_name(Net(), dict(bias_decay_multi=0.5))
