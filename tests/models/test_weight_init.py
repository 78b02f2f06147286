"""Initialisers with MMEngine's layer/override/bias_prob rules, and Pretrained loading."""

import math

import pytest
import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.init import bias_init_with_prob, initialize


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.reg = nn.Conv2d(4, 2, 1)
        self.fc = nn.Linear(4, 3)


def test_constant_with_layer_selects_by_class_name():
    net = Net()
    initialize(net, dict(type="Constant", layer="Conv2d", val=1, bias=2))
    for conv in (net.feat, net.reg):
        assert (conv.weight == 1).all() and (conv.bias == 2).all()
    assert not (net.fc.weight == 1).all()


def test_layer_matches_direct_base_classes():
    net = Net()
    initialize(net, dict(type="Constant", layer="_BatchNorm", val=3))
    assert (net.bn.weight == 3).all()
    initialize(net, dict(type="Constant", layer="_ConvNd", val=5))
    assert (net.feat.weight == 5).all() and (net.reg.weight == 5).all()


def test_no_layer_touches_nothing():
    net = Net()
    before = net.fc.weight.clone()
    initialize(net, dict(type="Constant", val=7))
    assert torch.equal(net.fc.weight, before)


def test_override_with_arguments_and_with_name_only():
    net = Net()
    initialize(
        net,
        dict(
            type="Constant",
            layer="Conv2d",
            val=1,
            bias=2,
            override=dict(type="Constant", name="reg", val=3, bias=4),
        ),
    )
    assert (
        (net.feat.weight == 1).all() and (net.reg.weight == 3).all() and (net.reg.bias == 4).all()
    )
    net = Net()
    initialize(net, dict(type="Constant", layer="Linear", val=6, override=dict(name="bn")))
    assert (net.bn.weight == 6).all() and (net.fc.weight == 6).all()


def test_override_errors_name_the_problem():
    with pytest.raises(AttributeError, match="did you mean 'reg'"):
        initialize(Net(), dict(type="Constant", val=1, override=dict(name="rge")))
    with pytest.raises(ValueError, match="no 'type'"):
        initialize(Net(), dict(type="Constant", val=1, override=dict(name="reg", val=2)))


def test_bias_prob_and_distributions():
    net = Net()
    initialize(net, dict(type="Normal", layer="Linear", std=0.01, bias_prob=0.01))
    assert torch.allclose(net.fc.bias, torch.full((3,), bias_init_with_prob(0.01)))
    assert math.isclose(torch.sigmoid(net.fc.bias[0]).item(), 0.01, rel_tol=1e-5)
    big = nn.Linear(200, 200)
    initialize(big, dict(type="Uniform", layer="Linear", a=-0.5, b=0.5))
    assert big.weight.min() >= -0.5 and big.weight.max() <= 0.5
    initialize(big, dict(type="TruncNormal", layer="Linear", std=1.0, a=-0.1, b=0.1))
    assert big.weight.abs().max() <= 0.1
    initialize(big, dict(type="Kaiming", layer="Linear", mode="fan_in"))
    assert abs(big.weight.std().item() - math.sqrt(2 / 200)) < 0.01
    initialize(big, dict(type="Xavier", layer="Linear", distribution="uniform"))
    assert big.weight.abs().max() <= math.sqrt(6 / 400) + 1e-6
    with pytest.raises(ValueError, match="distribution"):
        initialize(big, dict(type="Xavier", layer="Linear", distribution="gauss"))


def test_layer_typo_warns():
    with pytest.warns(UserWarning, match="did you mean 'Conv2d'"):
        initialize(Net(), dict(type="Constant", layer="Conv2D", val=1))


def test_pretrained_with_prefix_loads_sub_model(tmp_path):
    source = nn.Sequential()
    source.add_module("backbone", nn.Linear(2, 2))
    nn.init.constant_(source.backbone.weight, 0.5)
    path = tmp_path / "model.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    target = nn.Linear(2, 2)
    initialize(target, dict(type="Pretrained", checkpoint=str(path), prefix="backbone."))
    assert (target.weight == 0.5).all()


def test_base_module_runs_pretrained_after_children(tmp_path):
    class Parent(BaseModule):
        def __init__(self, init_cfg):
            super().__init__(init_cfg)
            self.fc = nn.Linear(2, 2)

    path = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.full((2, 2), 9.0), "fc.bias": torch.zeros(2)}, path)
    m = Parent(
        [
            dict(type="Pretrained", checkpoint=str(path)),
            dict(type="Constant", layer="Linear", val=1),
        ]
    )
    m.init_weights()
    assert (m.fc.weight == 9).all()
