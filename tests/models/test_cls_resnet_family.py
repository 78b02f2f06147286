"""The ResNet relatives of the classification zoo (ResNeXt, SEResNet, SEResNeXt, ResNeSt,
Res2Net, RegNet, CSPDarkNet/CSPResNet/CSPResNeXt) at tiny sizes: output shapes for every
stage, a backward pass reaching every parameter, frozen stages and ``norm_eval``, RegNet's
width rule against the paper's RegNetX-400MF, the Res2Net block's layout, the two
``ResNeSt`` entries, and argument errors. Key layouts and outputs against MMPretrain's own
configs are the oracle tests' job (tests/upstream/test_cls_keys.py, test_cls_numeric.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.backbones.cspnet import CSPNet, DarknetBottleneck
from vistra.models.backbones.regnet import block_widths, match_groups, split_stages
from vistra.models.backbones.res2net import Bottle2neck
from vistra.models.backbones.resnet import Bottleneck
from vistra.models.backbones.resnext import Bottleneck as ResNeXtBottleneck
from vistra.models.backbones.resnext import grouped_width
from vistra.registry import MODELS, default_scope

ALL_STAGES = dict(out_indices=(0, 1, 2, 3))
NARROW = dict(depth=50, stem_channels=8, base_channels=8, **ALL_STAGES)
# the ResNet-like families at a few channels per stage (ResNeSt's deep stem needs 16)
TINY = {
    "ResNeXt": dict(NARROW, groups=2, width_per_group=4),
    "SEResNet": dict(NARROW),
    "SEResNeXt": dict(NARROW, groups=2, width_per_group=4),
    "ResNeSt": dict(NARROW, stem_channels=16),
    "Res2Net": dict(NARROW, scales=4, base_width=4),
    # widths 8, 16, 32, 64 in blocks of 1, 1, 3, 1
    "RegNet": dict(
        arch=dict(w0=8, wa=8.0, wm=2.0, group_w=8, depth=6, bot_mul=1.0), stem_channels=8,
        **ALL_STAGES,
    ),
}  # fmt: skip
SHAPES = {name: [(32, 8, 8), (64, 4, 4), (128, 2, 2), (256, 1, 1)] for name in TINY}
SHAPES["RegNet"] = [(8, 8, 8), (16, 4, 4), (32, 2, 2), (64, 1, 1)]
# the CSP networks only come at full width: shapes of a 32x32 input
CSP = {
    "CSPDarkNet": (
        dict(depth=53, out_indices=(0, 1, 2, 3, 4)),
        [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2), (1024, 1, 1)],
    ),
    "CSPResNet": (
        dict(depth=50, **ALL_STAGES),
        [(128, 8, 8), (256, 4, 4), (512, 2, 2), (1024, 1, 1)],
    ),
    "CSPResNeXt": (
        dict(depth=50, **ALL_STAGES),
        [(256, 8, 8), (512, 4, 4), (1024, 2, 2), (2048, 1, 1)],
    ),
}


def _input(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def _check_backward(model: nn.Module, outs: tuple[torch.Tensor, ...]) -> None:
    sum(o.pow(2).mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad


@pytest.mark.parametrize("name", list(TINY))
def test_output_shapes_and_backward(name):
    model = MODELS.build(dict(type=name, **TINY[name]))
    model.init_weights()
    model.train()
    outs = model(_input())
    assert [tuple(o.shape[1:]) for o in outs] == SHAPES[name]
    _check_backward(model, outs)


@pytest.mark.parametrize("name", list(CSP))
def test_csp_output_shapes(name):
    cfg, shapes = CSP[name]
    model = MODELS.build(dict(type=name, **cfg)).eval()
    with torch.no_grad():
        outs = model(_input(batch=1))
    assert [tuple(o.shape[1:]) for o in outs] == shapes


@pytest.mark.parametrize("block", [DarknetBottleneck, Bottleneck, ResNeXtBottleneck])
def test_a_tiny_csp_network_of_each_block_trains(block):
    # the generic CSPNet with each block kind, as the registered variants use them
    arch = dict(
        block_fn=block, in_channels=(16, 32), out_channels=(32, 64), num_blocks=(1, 2),
        expand_ratio=(2, 1) if block is DarknetBottleneck else 2, bottle_ratio=(2, 1),
        has_downsampler=(False, True), down_growth=(False, True),
        block_args=dict(groups=2, base_channels=4) if block is ResNeXtBottleneck else {},
    )  # fmt: skip
    if block is not DarknetBottleneck:
        arch["bottle_ratio"] = 4
    model = CSPNet(arch, stem_fn=lambda c: nn.Conv2d(c, 16, 3, padding=1), out_indices=(0, -1))
    model.init_weights()
    model.train()
    outs = model(_input(size=16))
    assert [tuple(o.shape[1:]) for o in outs] == [(32, 16, 16), (64, 8, 8)]
    _check_backward(model, outs)


@pytest.mark.parametrize("name", ["ResNeXt", "Res2Net", "RegNet", "ResNeSt"])
def test_frozen_stages_and_norm_eval(name):
    model = MODELS.build(dict(type=name, **TINY[name], frozen_stages=1)).train()
    stem = [model.stem] if model.deep_stem else [model.conv1, model.norm1]
    for frozen in [*stem, model.layer1]:
        assert not any(p.requires_grad for p in frozen.parameters())
        assert not any(m.training for m in frozen.modules())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert model.layer2.training
    model = MODELS.build(dict(type=name, **TINY[name], norm_eval=True)).train()
    assert not any(m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert all(p.requires_grad for p in model.parameters())


def test_csp_frozen_stages_count_from_the_first_stage():
    # MMPretrain's rule: frozen_stages=k freezes the stem and stages 0..k
    model = MODELS.build(dict(type="CSPResNet", depth=50, frozen_stages=0)).train()
    for frozen in (model.stem, model.stages[0]):
        assert not any(p.requires_grad for p in frozen.parameters())
        assert not any(m.training for m in frozen.modules())
    assert all(p.requires_grad for p in model.stages[1].parameters())
    model = MODELS.build(dict(type="CSPDarkNet", depth=53, norm_eval=True)).train()
    assert not any(m.training for m in model.modules() if isinstance(m, _BatchNorm))


def test_regnet_widths_follow_the_paper():
    # RegNetX-400MF (Radosavovic et al. 2020, table of the RegNetX models)
    arch = MODELS.get("RegNet").arch_settings["regnetx_400mf"]
    widths, blocks = split_stages(block_widths(arch["w0"], arch["wa"], arch["wm"], arch["depth"]))
    widths, groups = match_groups(widths, [1.0] * 4, [arch["group_w"]] * 4)
    assert (widths, blocks, groups) == ([32, 64, 160, 384], [1, 2, 7, 12], [16] * 4)
    # a group no wider than the bottleneck, and a bottleneck a multiple of the group
    assert match_groups([40, 104], [1.0, 1.0], [48, 24]) == ([40, 96], [40, 24])


def test_res2net_blocks():
    model = MODELS.build(dict(type="Res2Net", **TINY["Res2Net"]))
    first, second = model.layer2[0], model.layer2[1]
    assert isinstance(first, Bottle2neck) and first.stage_type == "stage"
    assert second.stage_type == "normal" and not hasattr(second, "pool")
    assert first.pool.stride == 2 and first.convs[0].stride == (2, 2)
    assert len(first.convs) == len(first.bns) == 3 and not hasattr(first, "conv2")
    # avg_down (Res2Net's default): an identity pool in the stride-1 shortcut too
    assert isinstance(model.layer1[0].downsample[0], nn.AvgPool2d)
    assert isinstance(model.layer1[0].downsample[1], nn.Conv2d)


def test_resnest_entries_by_scope():
    plain, seg = MODELS.get("ResNeSt"), None
    with default_scope("mmseg"):
        seg = MODELS.get("ResNeSt")
    assert plain.__module__.endswith(".resnest") and seg.__module__.endswith(".resnest_mmseg")
    assert 269 in plain.arch_settings


def test_seresnext_builds_ratio_16_se_layers_as_mmpretrain():
    with pytest.warns(UserWarning, match="ignores se_ratio"):
        model = MODELS.build(dict(type="SEResNeXt", **TINY["SEResNeXt"], se_ratio=4))
    # 32 channels // 16, rounded up to 8
    assert model.layer1[0].se_layer.conv1.conv.out_channels == 8


@pytest.mark.parametrize(
    ("cfg", "error", "names"),
    [
        (dict(type="ResNeXt", depth=18), ValueError, ["depth=18", "50, 101, 152"]),
        (dict(type="ResNeSt", depth=50, radix=0), ValueError, ["radix"]),
        (dict(type="Res2Net", depth=50, scales=1), ValueError, ["scales"]),
        (dict(type="SEResNet", depth=50, se_ratio=0), ValueError, ["se_ratio"]),
        (dict(type="ResNeXt", depth=50, groups=0), ValueError, ["groups"]),
        (dict(type="RegNet", arch="regnetx_1gf"), ValueError, ["arch=", "regnetx_400mf"]),
        (dict(type="RegNet", arch=dict(w0=8)), ValueError, ["arch", "'wa'"]),
        (dict(type="RegNet", arch="regnetx_400mf", out_indices=(4,)), ValueError, ["out_indices"]),
        (dict(type="CSPDarkNet", depth=53, out_indices=(5,)), ValueError, ["out_indices", "-5..4"]),
        (dict(type="CSPResNet", depth=50, out_indices="3"), TypeError, ["out_indices"]),
        (dict(type="CSPResNet", depth=50, frozen_stages=4), ValueError, ["frozen_stages", "-1..3"]),
        (dict(type="CSPResNeXt", depth=101), ValueError, ["depth=101", "valid: 50"]),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_argument(cfg, error, names):
    with pytest.raises(error) as info:
        MODELS.build(cfg)
    assert all(name in str(info.value) for name in names), str(info.value)


def test_a_grouped_width_must_divide_evenly():
    assert grouped_width(256, 4, 32, 4, 64) == 128  # ResNeXt-50 32x4d, first stage
    assert grouped_width(256, 4, 1, 4, 64) == 64  # one group: a ResNet bottleneck
    with pytest.raises(ValueError, match="base_channels=48"):
        grouped_width(256, 4, 32, 4, 48)
