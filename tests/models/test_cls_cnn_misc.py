"""DenseNet, VGG, HRNet (+ HRFuseScales), InceptionV3, LeNet5, ConvMixer, VAN and HorNet
(MMPretrain's): build through the registry at tiny widths, output shapes per
``out_indices``, one backward pass, ``frozen_stages`` / ``norm_eval``, and bad arguments
that name themselves. The upstream comparisons (keys, logits) live in tests/upstream/."""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.registry import MODELS, default_scope

HR_EXTRA = dict(
    stage1=dict(num_modules=1, num_branches=1, block="BOTTLENECK", num_blocks=(1,),
                num_channels=(8,)),
    stage2=dict(num_modules=1, num_branches=2, block="BASIC", num_blocks=(1, 1),
                num_channels=(4, 8)),
    stage3=dict(num_modules=1, num_branches=3, block="BASIC", num_blocks=(1, 1, 1),
                num_channels=(4, 8, 16)),
    stage4=dict(num_modules=1, num_branches=4, block="BASIC", num_blocks=(1, 1, 1, 1),
                num_channels=(4, 8, 16, 32)),
)  # fmt: skip
HORNET_ARCH = dict(
    base_dim=8, depths=[1, 1, 1, 1], orders=[2, 2, 3, 3],
    # a global filter preset for another size than the test's: its weights get resized
    dw_cfg=[dict(type="DW", kernel_size=3)] * 2 + [dict(type="GF", h=4, w=3), dict(type="GF", h=2, w=2)],
)  # fmt: skip
VAN_ARCH = dict(embed_dims=[4, 8, 8, 16], depths=[1, 1, 1, 1], ffn_ratios=[2, 2, 2, 2])

# name: (config, input (N, C, H, W), expected output shapes)
CASES = {
    "densenet": (
        dict(type="DenseNet", arch=dict(growth_rate=4, depths=[1, 1, 1, 1], init_channels=8),
             out_indices=(0, 1, 2, 3), memory_efficient=True),
        (2, 3, 32, 32),
        [(2, 6, 4, 4), (2, 5, 2, 2), (2, 4, 1, 1), (2, 8, 1, 1)],
    ),
    "vgg": (
        dict(type="VGG", depth=11, num_stages=3, dilations=(1, 1, 2), out_indices=(0, 2),
             norm_cfg=dict(type="BN")),
        (2, 3, 16, 16),
        [(2, 64, 8, 8), (2, 256, 2, 2)],
    ),
    "lenet": (dict(type="LeNet5", num_classes=10), (2, 1, 32, 32), [(2, 10)]),
    "convmixer": (
        dict(type="ConvMixer", arch=dict(embed_dims=8, depth=3, patch_size=4, kernel_size=3),
             out_indices=(0, -1)),
        (2, 3, 16, 16),
        [(2, 8, 4, 4), (2, 8, 4, 4)],
    ),
    "van": (
        dict(type="VAN", arch=VAN_ARCH, out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
        (2, 3, 32, 32),
        [(2, 4, 8, 8), (2, 8, 4, 4), (2, 8, 2, 2), (2, 16, 1, 1)],
    ),
    "hornet": (
        dict(type="HorNet", arch=HORNET_ARCH, out_indices=(1, 3), with_cp=True),
        (2, 3, 32, 32),
        [(2, 16), (2, 64)],
    ),
    "hornet-maps": (
        dict(type="HorNet", arch=HORNET_ARCH, out_indices=(2, 3), gap_before_final_norm=False),
        (2, 3, 32, 32),
        [(2, 32, 2, 2), (2, 64, 1, 1)],
    ),
    "hrnet": (
        dict(type="HRNet", extra=HR_EXTRA),
        (2, 3, 32, 32),
        [(2, 4, 8, 8), (2, 8, 4, 4), (2, 16, 2, 2), (2, 32, 1, 1)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_build_forward_backward(name):
    cfg, shape, expected = CASES[name]
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    outs = model(torch.randn(*shape))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == expected
    sum(o.float().pow(2).mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_inception_v3_aux_only_in_training():
    model = MODELS.build(dict(type="InceptionV3", num_classes=5, aux_logits=True, dropout=0.0))
    assert "AuxLogits.fc.weight" in model.state_dict()
    model.eval()
    with torch.no_grad():
        aux, logits = model(torch.randn(1, 3, 75, 75))
    assert aux is None and logits.shape == (1, 5)
    # the auxiliary classifier needs the 17x17 map of a 299px image: run it on its own
    assert model.AuxLogits(torch.randn(2, 768, 17, 17)).shape == (2, 5)
    model.AuxLogits = None  # (a 75px image is too small for it in training mode)
    model.train()
    aux, logits = model(torch.randn(2, 3, 75, 75))
    assert aux is None
    logits.sum().backward()
    assert model.Conv2d_1a_3x3.conv.weight.grad is not None
    plain = MODELS.build(dict(type="InceptionV3", num_classes=5))
    assert not any(k.startswith("AuxLogits") for k in plain.state_dict())


def test_hrnet_presets_scopes_and_fuse_neck():
    net = MODELS.build(dict(type="HRNet", arch="w18"))
    assert net.stage4[0].branches[3][0].conv1.weight.shape[0] == 144
    torch.manual_seed(0)
    plain = MODELS.build(dict(type="HRNet", extra=HR_EXTRA))
    with default_scope("mmseg"):
        seg = MODELS.build(dict(type="HRNet", extra=HR_EXTRA))
    assert type(seg).__name__ == "SegHRNet" and type(plain).__name__ == "HRNet"
    assert set(seg.state_dict()) == set(plain.state_dict())
    seg.load_state_dict(plain.state_dict())
    plain.eval()
    seg.eval()
    x = torch.randn(1, 3, 32, 32)
    # same weights, the upsampling of the fusions differs (nearest vs bilinear)
    a, b = plain(x), seg(x)
    assert isinstance(a, tuple) and isinstance(b, list)
    assert not torch.allclose(a[0], b[0])
    neck = MODELS.build(dict(type="HRFuseScales", in_channels=(4, 8, 16, 32), out_channels=16))
    neck.eval()
    (fused,) = neck(a)
    assert fused.shape == (1, 16, 1, 1)
    assert {"increase_layers.3.0.conv3.weight", "downsample_layers.2.conv.weight",
            "final_layer.bn.weight"} <= set(neck.state_dict())  # fmt: skip


def _frozen_prefixes(model) -> set[str]:
    return {".".join(n.split(".")[:2]) for n, p in model.named_parameters() if not p.requires_grad}


def test_frozen_stages():
    dense = MODELS.build({**CASES["densenet"][0], "frozen_stages": 2})
    dense.train()
    assert _frozen_prefixes(dense) == {"stages.0", "stages.1", "transitions.0", "transitions.1"}
    assert not dense.stages[1].training and dense.stages[2].training

    mixer = MODELS.build({**CASES["convmixer"][0], "frozen_stages": 1})
    mixer.train()
    assert _frozen_prefixes(mixer) == {"stages.0"}

    vgg = MODELS.build({**CASES["vgg"][0], "frozen_stages": 1, "norm_eval": True})
    vgg.train()
    assert _frozen_prefixes(vgg) == {"features.0"}
    assert not any(m.training for m in vgg.modules() if isinstance(m, _BatchNorm))

    # VAN and HorNet count frozen_stages from 0: n freezes stages 0..n
    van = MODELS.build({**CASES["van"][0], "frozen_stages": 0, "norm_eval": True})
    van.train()
    assert {n.split(".")[0] for n, p in van.named_parameters() if not p.requires_grad} == {
        "patch_embed1", "blocks1", "norm1",
    }  # fmt: skip
    assert not van.blocks3[0].norm1.training

    hornet = MODELS.build({**CASES["hornet"][0], "frozen_stages": 1})
    hornet.train()
    assert _frozen_prefixes(hornet) == {
        "downsample_layers.0", "downsample_layers.1", "stages.0", "stages.1", "norm1.weight",
        "norm1.bias",
    }  # fmt: skip
    assert not hornet.stages[1].training and hornet.stages[2].training


@pytest.mark.parametrize(
    ("cfg", "exc", "pattern"),
    [
        (dict(type="DenseNet", arch="122"), ValueError, "arch"),
        (dict(type="DenseNet", arch=dict(growth_rate=4)), ValueError, "depths"),
        (dict(type="DenseNet", out_indices=(4,)), ValueError, "out_indices"),
        (dict(type="DenseNet", out_indices="3"), TypeError, "out_indices"),
        (dict(type="VGG", depth=12), ValueError, "depth"),
        (dict(type="VGG", depth=11, out_indices=(5,)), ValueError, "out_indices"),
        (dict(type="VGG", depth=11, num_stages=3), ValueError, "dilations"),
        (dict(type="ConvMixer", arch="768/33"), ValueError, "arch"),
        (dict(type="ConvMixer", frozen_stages=40), ValueError, "frozen_stages"),
        (dict(type="VAN", patch_sizes=[7, 3, 3]), ValueError, "patch_sizes"),
        (dict(type="VAN", out_indices=(4,)), ValueError, "out_indices"),
        (dict(type="VAN", block_cfgs=[dict()]), TypeError, "block_cfgs"),
        (dict(type="HorNet", arch="tiny-gff"), ValueError, "arch"),
        (dict(type="HorNet", arch={**HORNET_ARCH, "dw_cfg": [dict(type="XX")] * 4}), ValueError,
         "dw_cfg"),
        (dict(type="HorNet", frozen_stages=4), ValueError, "frozen_stages"),
        (dict(type="HRNet", arch="w19"), ValueError, "arch"),
        (dict(type="HRFuseScales", in_channels=(4, 8, 16)), ValueError, "in_channels"),
        (dict(type="InceptionV3", num_classes=0), ValueError, "num_classes"),
        (dict(type="LeNet5", num_classes="10"), TypeError, "num_classes"),
    ],
)  # fmt: skip
def test_bad_arguments_name_themselves(cfg, exc, pattern):
    with pytest.raises(exc, match=pattern):
        MODELS.build(cfg)
