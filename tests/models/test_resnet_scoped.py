"""The ResNet variants of MMSegmentation (scope ``mmseg``) and MMSelfSup (``mmselfsup``):
key layouts, cross-layout loading with every rename listed, arguments and outputs."""

import pytest
import torch
from torch import nn

from vistra.checkpoint import load_state_dict as vistra_load
from vistra.models.backbones import ResNet, ResNetV1c, ResNetV1d
from vistra.models.backbones.resnet_mmseg import SegResNet, SegResNetV1c, SegResNetV1d
from vistra.models.backbones.resnet_selfsup import ResNetSobel, SelfSupResNet, SelfSupResNetV1d
from vistra.models.layers.key_remap import remap_state_dict
from vistra.registry import MODELS, RegistryError, default_scope

BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def shapes(module: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + (0.5 if "var" in name else -0.5))
    return model.eval()


def _flat_stem_expected() -> dict[str, tuple]:
    out = {}
    for i, (cin, cout) in enumerate([(3, 32), (32, 32), (32, 64)]):
        out[f"stem.{3 * i}.weight"] = (cout, cin, 3, 3)
        for leaf in BN_LEAVES:
            out[f"stem.{3 * i + 1}.{leaf}"] = () if leaf == "num_batches_tracked" else (cout,)
    return out


# ----------------------------------------------------------------------------- registry
@pytest.mark.parametrize(
    ("name", "scope", "cls"),
    [
        ("ResNet", "mmseg", SegResNet),
        ("ResNetV1c", "mmseg", SegResNetV1c),
        ("ResNetV1d", "mmseg", SegResNetV1d),
        ("ResNet", "mmselfsup", SelfSupResNet),
        ("ResNetV1d", "mmselfsup", SelfSupResNetV1d),
        ("ResNetV1c", "mmpretrain", ResNetV1c),
        ("ResNetV1c", None, ResNetV1c),
    ],
)
def test_the_scope_picks_the_package_variant(name, scope, cls):
    with default_scope(scope):
        assert MODELS.get(name) is cls
    if scope:
        assert MODELS.get(f"{scope}.{name}") is cls
        assert type(MODELS.build(dict(type=name, depth=18, _scope_=scope))) is cls


# ----------------------------------------------------------------------------- MMSeg layout
def test_mmseg_v1c_stem_is_flat_and_the_rest_is_unchanged():
    seg, plain = shapes(SegResNetV1c(depth=50)), shapes(ResNetV1c(depth=50))
    assert {k: v for k, v in seg.items() if k.startswith("stem.")} == _flat_stem_expected()
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("stem.")}  # noqa: E731
    assert strip(seg) == strip(plain)


def test_mmseg_v1d_pools_before_every_shortcut():
    model = SegResNetV1d(depth=50)
    got = shapes(model)
    pool = model.layer1[0].downsample[0]
    assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 1  # identity, stride 1
    assert got["layer1.0.downsample.1.weight"] == (256, 64, 1, 1)
    assert got["layer1.0.downsample.2.running_var"] == (256,)
    assert "layer1.0.downsample.0.weight" not in got
    assert got["layer2.0.downsample.1.weight"] == (512, 256, 1, 1)


@pytest.mark.parametrize(
    ("plain_cls", "seg_cls"), [(ResNetV1c, SegResNetV1c), (ResNetV1d, SegResNetV1d)]
)
def test_both_layouts_load_each_other_with_every_rename_listed(plain_cls, seg_cls):
    plain = randomised(plain_cls(depth=50, out_indices=(0, 1, 2, 3)))
    seg = seg_cls(depth=50).eval()
    state = dict(plain.state_dict())
    renamed = remap_state_dict(seg, state)  # the loader's first step
    stem = 18  # 3 convs and 3 norms of 5 entries
    assert len(renamed) == stem + (6 if seg_cls is SegResNetV1d else 0)  # layer1 conv + norm
    assert ("stem.0.conv.weight", "stem.0.weight") in renamed
    assert ("stem.2.bn.running_var", "stem.7.running_var") in renamed
    report = vistra_load(seg, state)
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(plain(x), seg(x), strict=True):
            assert torch.equal(a, b)
    # and back: the MMSeg layout into the plain variant (a plain torch strict load: hooks)
    fresh = plain_cls(depth=50, out_indices=(0, 1, 2, 3)).eval()
    fresh.load_state_dict(seg.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(x)[-1], plain(x)[-1])


def test_a_state_dict_in_the_own_layout_is_not_renamed():
    model = SegResNetV1d(depth=18)
    state = dict(model.state_dict())
    assert remap_state_dict(model, state) == []
    assert state.keys() == model.state_dict().keys()


def test_the_checkpoint_loaders_hook_path_lists_stem_renames():
    # without the remap step first, vistra's loader sees the renames its hooks make
    plain = randomised(ResNetV1c(depth=18))
    report = vistra_load(SegResNetV1c(depth=18), plain.state_dict())
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    assert ("stem.1.bn.weight", "stem.4.weight") in report.remapped
    assert len(report.remapped) == 18


def test_mmseg_arguments_and_defaults():
    model = SegResNet(depth=18)
    assert model.out_indices == (0, 1, 2, 3)
    assert model.zero_init_residual
    assert not SegResNet(depth=18, init_cfg=dict(type="Kaiming", layer="Conv2d")).zero_init_residual
    with pytest.raises(ValueError, match="cannot be set at the same time"):
        SegResNet(depth=18, pretrained="x.pth", init_cfg=dict(type="Pretrained", checkpoint="y"))
    with default_scope("mmseg"), pytest.raises(RegistryError, match="drop_path_rate"):
        MODELS.build(dict(type="ResNetV1c", depth=50, drop_path_rate=0.1))
    with pytest.raises(TypeError, match="fixes deep_stem"):
        SegResNetV1c(depth=50, deep_stem=False)


def test_mmseg_default_init_zeroes_the_last_norm_of_each_block():
    model = SegResNet(depth=18)
    model.init_weights()
    assert torch.count_nonzero(model.layer1[0].norm2.weight) == 0
    assert torch.all(model.layer1[0].norm1.weight == 1)


# ----------------------------------------------------------------------------- MMSelfSup
def test_selfsup_out_indices_count_the_stem_as_zero():
    model = randomised(SelfSupResNet(depth=18, out_indices=[0, 1, 4]))
    plain = ResNet(18, out_indices=(0, 3)).eval()
    plain.load_state_dict(model.state_dict(), strict=True)  # mmcls's keys
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stem, stage1, stage4 = model(x)
        ref1, ref4 = plain(x)
    assert stem.shape == (2, 64, 32, 32)  # after the stem's ReLU, before the max pool
    assert torch.equal(stage1, ref1) and torch.equal(stage4, ref4)


def test_selfsup_defaults_and_range():
    model = SelfSupResNet(depth=50)
    assert model.out_indices == (4,) and not model.zero_init_residual
    assert shapes(model) == shapes(ResNet(50))
    assert shapes(SelfSupResNetV1d(depth=50)) == shapes(ResNetV1d(depth=50))
    with pytest.raises(ValueError, match="0 is the stem"):
        SelfSupResNet(depth=18, out_indices=[5])
    with default_scope("mmselfsup"):  # the SimCLR config's backbone
        backbone = MODELS.build(dict(type="ResNet", depth=18, out_indices=[4])).eval()
    out = backbone(torch.randn(1, 3, 32, 32))
    assert len(out) == 1 and out[0].shape == (1, 512, 1, 1)


def test_resnet_sobel_keeps_its_fixed_filters():
    model = ResNetSobel(depth=18)
    model.init_weights()
    keys = shapes(model)
    assert keys["sobel_layer.sobel.0.weight"] == (1, 3, 1, 1)
    assert keys["sobel_layer.sobel.1.weight"] == (2, 1, 3, 3)
    assert keys["conv1.weight"] == (64, 2, 7, 7)
    assert torch.allclose(model.sobel_layer.sobel[0].weight, torch.full((1, 3, 1, 1), 1 / 3))
    assert model.sobel_layer.sobel[1].weight[0, 0, 1].tolist() == [2.0, 0.0, -2.0]
    assert not any(p.requires_grad for p in model.sobel_layer.parameters())


def test_the_checkpoint_loader_alone_converts_avg_down_shortcuts():
    plain = ResNetV1d(depth=50)
    report = vistra_load(SegResNetV1d(depth=50), plain.state_dict())
    assert (report.missing, report.mismatched) == ([], [])
