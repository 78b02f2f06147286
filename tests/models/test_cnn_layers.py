"""Norm/conv/activation builders, ConvModule and DropPath against MMCV's names and rules."""

import pytest
import torch
from torch import nn

from vistra.models.layers import (
    ConvModule,
    DropPath,
    HSigmoid,
    build_activation_layer,
    build_conv_layer,
    build_norm_layer,
    infer_abbr,
)
from vistra.registry import RegistryError


@pytest.mark.parametrize(
    ("cfg", "cls", "name"),
    [
        (dict(type="BN"), nn.BatchNorm2d, "bn1"),
        (dict(type="BN1d"), nn.BatchNorm1d, "bn1"),
        (dict(type="BN3d"), nn.BatchNorm3d, "bn1"),
        (dict(type="SyncBN"), nn.SyncBatchNorm, "bn1"),
        (dict(type="GN", num_groups=2), nn.GroupNorm, "gn1"),
        (dict(type="LN"), nn.LayerNorm, "ln1"),
        (dict(type="IN"), nn.InstanceNorm2d, "in1"),
    ],
)
def test_build_norm_layer_names_and_types(cfg, cls, name):
    got_name, layer = build_norm_layer(cfg, 4, postfix=1)
    assert got_name == name and type(layer) is cls


def test_build_norm_layer_options():
    _, bn = build_norm_layer(dict(type="BN", requires_grad=False, eps=1e-3, momentum=0.3), 8)
    assert all(not p.requires_grad for p in bn.parameters())
    assert bn.eps == 1e-3 and bn.momentum == 0.3
    _, gn = build_norm_layer(dict(type="GN", num_groups=4), 8)
    assert gn.num_groups == 4 and gn.num_channels == 8
    with pytest.raises(KeyError, match="num_groups"):
        build_norm_layer(dict(type="GN"), 8)
    with pytest.raises(RegistryError, match="did you mean 'SyncBN'"):
        build_norm_layer(dict(type="SyncBn"), 8)


def test_infer_abbr_uses_class_hierarchy_and_override():
    class MyNorm(nn.BatchNorm2d):
        pass

    class Custom(nn.Module):
        _abbr_ = "cst"

    assert infer_abbr(MyNorm) == "bn"
    assert infer_abbr(Custom) == "cst"
    assert infer_abbr(nn.InstanceNorm2d) == "in"


def test_activations_and_conv_builder():
    assert isinstance(build_activation_layer(dict(type="HSwish")), nn.Hardswish)
    x = torch.linspace(-4, 4, 9)
    assert torch.allclose(HSigmoid()(x), ((x + 3) / 6).clamp(0, 1))
    assert torch.allclose(build_activation_layer(dict(type="Swish"))(x), x * torch.sigmoid(x))
    with pytest.raises(RegistryError, match="did you mean 'ReLU'"):
        build_activation_layer(dict(type="Relu"))
    conv = build_conv_layer(None, 3, 8, 3, padding=1)
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == 8
    assert isinstance(build_conv_layer(dict(type="Conv1d"), 3, 8, 3), nn.Conv1d)


def test_conv_module_keys_bias_and_order():
    m = ConvModule(3, 8, 3, padding=1, norm_cfg=dict(type="BN"))
    assert sorted(k.split(".")[0] for k in m.state_dict()) == ["bn"] * 5 + ["conv"]
    assert m.conv.bias is None  # bias='auto' with a norm
    assert ConvModule(3, 8, 1).conv.bias is not None
    assert m.activate.inplace is True
    x = torch.randn(2, 3, 6, 6)
    m.eval()
    assert torch.allclose(m(x), torch.relu(m.bn(m.conv(x))))
    pre = ConvModule(3, 8, 1, norm_cfg=dict(type="BN"), order=("norm", "act", "conv"))
    assert pre.bn.num_features == 3  # a norm before the conv sees the input channels
    gelu = ConvModule(3, 8, 1, act_cfg=dict(type="GELU"))
    assert isinstance(gelu.activate, nn.GELU)
    with pytest.raises(ValueError, match="order"):
        ConvModule(3, 8, 1, order=("conv", "act"))


def test_conv_module_explicit_padding():
    m = ConvModule(1, 1, 3, padding=1, padding_mode="reflect", act_cfg=None)
    assert isinstance(m.padding_layer, nn.ReflectionPad2d) and m.conv.padding == (0, 0)
    assert m(torch.randn(1, 1, 5, 5)).shape == (1, 1, 5, 5)


def test_drop_path_scales_kept_samples_and_is_identity_in_eval():
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(64, 2, 3)
    y = dp(x)
    per_sample = y.flatten(1)
    assert set(per_sample[:, 0].tolist()) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()  # whole samples are dropped or kept
    dp.eval()
    assert torch.equal(dp(x), x)
    with pytest.raises(ValueError):
        DropPath(1.0)
