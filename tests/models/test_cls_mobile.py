"""MMPretrain's mobile classification backbones (EfficientNet, EfficientNetV2, MobileNetV2,
MobileNetV3, ShuffleNetV1, ShuffleNetV2) at tiny sizes: output shapes for every layer, a
backward pass, frozen stages and ``norm_eval``, argument errors, and the EfficientNet
scaling rule. Key layouts and outputs against MMPretrain's own configs are the oracle
tests' job (tests/upstream/test_cls_keys.py, test_cls_numeric.py)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.backbones.efficientnet import EfficientNet, scale_layers
from vistra.models.layers.channel_shuffle import channel_shuffle
from vistra.registry import MODELS, default_scope

# every family at a tiny width, asking for all of its layers
TINY = {
    "EfficientNet": dict(
        arch=dict(widen_factor=0.25, deepen_factor=0.3), drop_path_rate=0.1,
        out_indices=tuple(range(7)),
    ),
    "EfficientNet-e": dict(
        type="EfficientNet", arch=dict(widen_factor=0.25, deepen_factor=0.5, layers="e"),
        act_cfg=dict(type="ReLU"), out_indices=tuple(range(7)),
    ),
    "EfficientNetV2": dict(
        arch=dict(layers=[[2, 3, 1, 1, 8, 8, 0.0, -1], [2, 3, 2, 4, 8, 16, 0.0, 0],
                          [2, 3, 2, 4, 16, 16, 0.25, 1], [1, 1, 1, 1, 16, 32, 0.0, -2]]),
        drop_path_rate=0.1, out_indices=(0, 1, 2, 3, 4),
    ),
    "MobileNetV2": dict(widen_factor=0.25, out_indices=tuple(range(8))),
    "MobileNetV3": dict(
        arch=dict(layers=[[3, 16, 16, True, "ReLU", 2], [3, 32, 16, False, "ReLU", 1],
                          [5, 48, 24, True, "HSwish", 2]]),
        out_indices=(0, 1, 2, 3, 4),
    ),
    "ShuffleNetV1": dict(groups=2, widen_factor=0.5, out_indices=(0, 1, 2)),
    "ShuffleNetV2": dict(widen_factor=0.5, out_indices=(0, 1, 2, 3)),
}  # fmt: skip
# (C, H, W) of each output for a 32x32 input
SHAPES = {
    "EfficientNet": [(8, 16, 16), (8, 16, 16), (8, 8, 8), (16, 4, 4), (32, 2, 2), (80, 1, 1),
                     (320, 1, 1)],
    "EfficientNet-e": [(8, 16, 16), (8, 16, 16), (8, 8, 8), (16, 4, 4), (40, 2, 2), (48, 1, 1),
                       (320, 1, 1)],
    "EfficientNetV2": [(8, 16, 16), (8, 16, 16), (16, 8, 8), (16, 4, 4), (32, 4, 4)],
    "MobileNetV2": [(8, 16, 16), (8, 8, 8), (8, 4, 4), (16, 2, 2), (24, 2, 2), (40, 1, 1),
                    (80, 1, 1), (1280, 1, 1)],
    "MobileNetV3": [(16, 16, 16), (16, 8, 8), (16, 8, 8), (24, 4, 4), (48, 4, 4)],
    "ShuffleNetV1": [(104, 4, 4), (200, 2, 2), (400, 1, 1)],
    "ShuffleNetV2": [(48, 4, 4), (96, 2, 2), (192, 1, 1), (1024, 1, 1)],
}  # fmt: skip


def _build(name: str, **overrides) -> torch.nn.Module:
    cfg = {"type": name, **TINY[name], **overrides}
    return MODELS.build(cfg)


def _input(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(TINY))
def test_forward_shapes_and_backward(name):
    torch.manual_seed(0)
    model = _build(name)
    model.init_weights()
    model.train()
    outs = model(_input())
    assert isinstance(outs, tuple)
    assert [tuple(o.shape[1:]) for o in outs] == SHAPES[name]
    sum(o.mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_with_cp_gives_the_same_gradients():
    for name in ("EfficientNetV2", "MobileNetV3", "ShuffleNetV1", "ShuffleNetV2"):
        plain = _build(name).eval()  # eval: no drop path, so both runs compute alike
        checkpointed = _build(name, with_cp=True).eval()
        checkpointed.load_state_dict(plain.state_dict())
        x = _input().requires_grad_()
        sum(o.sum() for o in plain(x)).backward()
        grad = x.grad.clone()
        x.grad = None
        sum(o.sum() for o in checkpointed(x)).backward()
        assert torch.allclose(x.grad, grad, atol=1e-5), name


# (family, frozen_stages, modules frozen and in eval mode, modules with frozen parameters
# but a BatchNorm still in train mode -- MMPretrain's rule for the stems of these nets)
FROZEN = [
    ("EfficientNet", 2, ["layers.0", "layers.1"], []),
    ("EfficientNetV2", 3, ["layers.0", "layers.1", "layers.2"], []),
    ("MobileNetV2", 2, ["layer1", "layer2"], ["conv1"]),
    ("MobileNetV3", 1, ["layer0", "layer1"], []),
    ("ShuffleNetV1", 1, ["layers.0"], ["conv1"]),
    ("ShuffleNetV2", 0, [], ["conv1"]),
]


@pytest.mark.parametrize(("name", "frozen", "frozen_eval", "frozen_train"), FROZEN)
def test_frozen_stages(name, frozen, frozen_eval, frozen_train):
    model = _build(name, frozen_stages=frozen)
    model.train()
    modules = dict(model.named_modules())
    for prefix in frozen_eval + frozen_train:
        assert all(not p.requires_grad for p in modules[prefix].parameters()), prefix
    for prefix in frozen_eval:
        assert not any(m.training for m in modules[prefix].modules()), prefix
    for prefix in frozen_train:
        assert all(m.training for m in modules[prefix].modules()), prefix
    frozen_names = tuple(p + "." for p in frozen_eval + frozen_train)
    rest = [p for n, p in model.named_parameters() if not n.startswith(frozen_names)]
    assert rest and all(p.requires_grad for p in rest)


@pytest.mark.parametrize("name", [n for n in TINY if n != "EfficientNet-e"])
def test_norm_eval_keeps_batch_norms_in_eval_mode(name):
    model = _build(name, norm_eval=True)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and not any(m.training for m in norms)
    assert model.training


BAD = [
    ("EfficientNet", dict(arch="b9"), "arch='b9'"),
    ("EfficientNet", dict(arch=dict(widen_factor=1.0)), "deepen_factor"),
    ("EfficientNet", dict(arch=dict(widen_factor=1.0, deepen_factor=1.0, layers="x")), "layers"),
    ("EfficientNet", dict(out_indices=(7,)), "out_indices"),
    ("EfficientNet", dict(frozen_stages=8), "frozen_stages"),
    ("EfficientNetV2", dict(arch="b4"), "arch='b4'"),
    ("EfficientNetV2", dict(out_indices=(9,)), "out_indices"),
    ("EfficientNetV2", dict(frozen_stages=-1), "frozen_stages"),
    ("EfficientNetV2", dict(arch=dict(layers=[[1, 3, 1, 1, 8, 8, 0.0, -1]] * 2)), "block_type"),
    ("MobileNetV2", dict(out_indices=(8,)), "out_indices"),
    ("MobileNetV2", dict(out_indices="7"), "out_indices"),
    ("MobileNetV2", dict(frozen_stages=8), "frozen_stages"),
    ("MobileNetV2", dict(widen_factor=0), "widen_factor"),
    ("MobileNetV3", dict(arch="tiny"), "arch='tiny'"),
    ("MobileNetV3", dict(arch="small", out_indices=(13,)), "out_indices"),
    ("MobileNetV3", dict(arch="small", frozen_stages=13), "frozen_stages"),
    ("ShuffleNetV1", dict(groups=5), "groups"),
    ("ShuffleNetV1", dict(out_indices=(3,)), "out_indices"),
    ("ShuffleNetV1", dict(frozen_stages=3), "frozen_stages"),
    ("ShuffleNetV2", dict(widen_factor=0.75), "widen_factor"),
    ("ShuffleNetV2", dict(out_indices=(4,)), "out_indices"),
    ("ShuffleNetV2", dict(frozen_stages=-2), "frozen_stages"),
]


@pytest.mark.parametrize(("name", "args", "named"), BAD)
def test_bad_arguments_name_the_argument(name, args, named):
    with pytest.raises((ValueError, TypeError)) as info:
        MODELS.build(dict(type=name, **args))
    assert named in str(info.value)


def test_efficientnet_scaling_follows_the_arch_table():
    # B1 deepens by 1.1: every run of n same-width blocks becomes ceil(1.1 n) blocks, and the
    # stride-1 runs (112, 320 channels) stay in the stage before them
    depths = [len(s) for s in scale_layers(EfficientNet.layer_settings["b"], 1.0, 1.1)]
    assert depths == [1, 2, 3, 3, 8, 7, 1]
    b4 = scale_layers(EfficientNet.layer_settings["b"], 1.4, 1.8)
    assert (b4[0][0][1], b4[-1][0][1]) == (48, 1792)
    # EdgeTPU-M: the repeat of the expand-3 Fused-MBConv expands by 4 without a shortcut
    em = EfficientNet(arch="em", act_cfg=dict(type="ReLU"))
    first, repeat = em.layers[1]
    assert (first.conv1.conv.out_channels, repeat.conv1.conv.out_channels) == (96, 96)
    assert not repeat.with_shortcut and not hasattr(first, "se")
    assert [len(layer) if isinstance(layer, torch.nn.Sequential) else 1 for layer in em.layers] == [
        1, 2, 3, 5, 11, 3, 1
    ]  # fmt: skip


def test_mmpretrain_and_mmsegmentation_mobilenets_are_told_apart_by_scope():
    plain_v2, plain_v3 = MODELS.get("MobileNetV2"), MODELS.get("MobileNetV3")
    assert plain_v2.__module__ == "vistra.models.backbones.mobilenet_v2"
    assert plain_v3.__module__ == "vistra.models.backbones.mobilenet_v3"
    with default_scope("mmseg"):
        assert MODELS.get("MobileNetV2").__module__.endswith("mobilenet_v2_mmseg")
        assert MODELS.get("MobileNetV3").__module__.endswith("mobilenet_v3_mmseg")
    with default_scope("mmpretrain"):
        assert MODELS.get("MobileNetV3") is plain_v3


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    with pytest.raises(ValueError, match="groups"):
        channel_shuffle(x, 4)
