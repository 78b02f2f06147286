"""ResNet family: checkpoint keys and shapes, forward, freezing, checkpointing, dilation."""

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.backbones import ResNet, ResNet_CIFAR, ResNetV1c, ResNetV1d
from vistra.models.backbones.resnet import Bottleneck

BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def shapes(module: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("depth", [18, 50])
def test_plain_resnet_keys_and_shapes_match_torchvision(depth):
    # MMPretrain's ResNet checkpoints use torchvision's names for the plain variant.
    ours = shapes(ResNet(depth))
    ref = {
        k: v
        for k, v in shapes(getattr(torchvision.models, f"resnet{depth}")()).items()
        if not k.startswith("fc.")
    }
    assert ours == ref


def test_resnet18_forward_matches_torchvision_with_the_same_weights():
    ref = torchvision.models.resnet18().eval()
    ours = ResNet(18, out_indices=(0, 1, 2, 3)).eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = ours(x)
        expected = ref.layer4(
            ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x)))))))
        )
    assert torch.allclose(feats[-1], expected, atol=1e-5)


def _deep_stem_expected() -> dict[str, tuple]:
    out = {}
    for i, (cin, cout) in enumerate([(3, 32), (32, 32), (32, 64)]):
        out[f"stem.{i}.conv.weight"] = (cout, cin, 3, 3)
        for leaf in BN_LEAVES:
            out[f"stem.{i}.bn.{leaf}"] = () if leaf == "num_batches_tracked" else (cout,)
    return out


def test_resnet_v1c_keys():
    got = shapes(ResNetV1c(depth=50))
    plain = shapes(ResNet(50))
    stem = {k: v for k, v in got.items() if k.startswith("stem.")}
    assert stem == _deep_stem_expected()
    assert {k: v for k, v in got.items() if not k.startswith("stem.")} == {
        k: v for k, v in plain.items() if not k.startswith(("conv1.", "bn1."))
    }


def test_resnet_v1d_keys_put_the_pool_only_before_strided_shortcuts():
    model = ResNetV1d(depth=50)
    got = shapes(model)
    assert got["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)  # stride 1: no pool
    assert "layer1.0.downsample.1.running_mean" in got
    for layer, (cin, cout) in {
        "layer2": (256, 512),
        "layer3": (512, 1024),
        "layer4": (1024, 2048),
    }.items():
        assert isinstance(getattr(model, layer)[0].downsample[0], nn.AvgPool2d)
        assert got[f"{layer}.0.downsample.1.weight"] == (cout, cin, 1, 1)
        assert got[f"{layer}.0.downsample.2.running_var"] == (cout,)
        assert f"{layer}.0.downsample.0.weight" not in got
    assert {k for k in got if k.startswith("stem.")} == set(_deep_stem_expected())


@pytest.mark.parametrize(("depth", "widths"), [(18, (64, 128, 256, 512)), (34, (64, 128, 256, 512)),
                                              (50, (256, 512, 1024, 2048)), (101, (256, 512, 1024, 2048)),
                                              (152, (256, 512, 1024, 2048))])  # fmt: skip
def test_forward_shapes_per_depth(depth, widths):
    model = ResNet(depth, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, w, s, s) for w, s in zip(widths, (8, 4, 2, 1))]
    assert model.feat_dim == widths[-1]


def test_out_indices_select_stages_and_are_checked():
    outs = ResNet(18, out_indices=(1, 3)).eval()(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [128, 512]
    with pytest.raises(ValueError, match="out_indices"):
        ResNet(18, out_indices=(4,))


@pytest.mark.parametrize("cls", [ResNet, ResNetV1c])
def test_frozen_stages_freeze_stem_and_first_stages(cls):
    model = cls(depth=18, frozen_stages=1)
    model.train()
    stem = [model.stem] if model.deep_stem else [model.conv1, model.bn1]
    for m in [*stem, model.layer1]:
        assert all(not p.requires_grad for p in m.parameters())
        assert all(not b.training for b in m.modules() if isinstance(b, _BatchNorm))
    for m in (model.layer2, model.layer3, model.layer4):
        assert all(p.requires_grad for p in m.parameters())
        assert all(b.training for b in m.modules() if isinstance(b, _BatchNorm))


def test_norm_eval_keeps_running_stats():
    model = ResNet(18, norm_eval=True)
    model.train()
    before = model.layer3[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(model.layer3[0].bn1.running_mean, before)
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert model.layer3[0].conv1.weight.requires_grad


def test_with_cp_gives_identical_outputs_and_grads_and_recomputes():
    torch.manual_seed(0)
    plain = ResNet(18, out_indices=(0, 3))
    plain.init_weights()
    cp = copy.deepcopy(plain)
    for m in cp.modules():
        if hasattr(m, "with_cp"):
            m.with_cp = True
    calls = []
    cp.layer2[0].conv1.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, 32, 32)
    out_plain, out_cp = plain(x), cp(x)
    for a, b in zip(out_plain, out_cp):
        assert torch.allclose(a, b)
    sum(o.sum() for o in out_plain).backward()
    sum(o.sum() for o in out_cp).backward()
    assert len(calls) == 2  # forward, then recomputed in backward
    for (name, p), q in zip(plain.named_parameters(), cp.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_dilated_v1c_has_output_stride_8_and_mmseg_dilation_rules():
    model = ResNetV1c(depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), out_indices=(0, 1, 2, 3),
                      contract_dilation=True).eval()  # fmt: skip
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [16, 8, 8, 8]
    assert [b.conv2.dilation[0] for b in model.layer3] == [1] + [2] * 5
    assert [b.conv2.dilation[0] for b in model.layer4] == [2, 4, 4]
    assert model.layer4[1].conv2.padding == (4, 4)
    grid = ResNetV1c(depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), multi_grid=(1, 2, 4))
    assert [b.conv2.dilation[0] for b in grid.layer4] == [1, 2, 4]
    assert [b.conv2.dilation[0] for b in grid.layer3][:2] == [2, 2]  # multi_grid: last stage only
    with pytest.raises(ValueError, match="multi_grid"):
        ResNetV1c(depth=50, multi_grid=(1, 2))


def test_caffe_style_strides_the_first_conv():
    model = ResNet(50, style="caffe")
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)
    assert ResNet(50).layer2[0].conv2.stride == (2, 2)


def test_init_weights_zero_inits_last_norm_of_each_block():
    model = ResNet(50)
    model.init_weights()
    assert all((m.bn3.weight == 0).all() for m in model.modules() if isinstance(m, Bottleneck))
    assert (model.bn1.weight == 1).all()
    kept = ResNet(18, zero_init_residual=False)
    kept.init_weights()
    assert (kept.layer1[0].bn2.weight == 1).all()


def test_pretrained_argument_becomes_init_cfg_and_skips_zero_init(tmp_path):
    src = ResNet(18)
    with torch.no_grad():
        src.layer1[0].bn2.weight.fill_(0.7)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    with pytest.warns(DeprecationWarning):
        model = ResNet(18, pretrained=str(path))
    assert model.init_cfg == dict(type="Pretrained", checkpoint=str(path))
    model.init_weights()
    assert torch.allclose(model.layer1[0].bn2.weight, torch.full((64,), 0.7))


def test_legacy_mmseg_layout_loads_strictly():
    model = ResNetV1d(depth=50)
    own = model.state_dict()
    legacy = {}
    stem = {"0.conv": 0, "0.bn": 1, "1.conv": 3, "1.bn": 4, "2.conv": 6, "2.bn": 7}
    for key, value in own.items():
        if key.startswith("stem."):
            head, leaf = key[5:].rsplit(".", 1)
            key = f"stem.{stem[head]}.{leaf}"
        elif key.startswith("layer1.0.downsample."):
            idx, rest = key[len("layer1.0.downsample.") :].split(".", 1)
            key = f"layer1.0.downsample.{int(idx) + 1}.{rest}"
        legacy[key] = value.clone() + (1 if value.is_floating_point() else 0)
    fresh = ResNetV1d(depth=50)
    fresh.load_state_dict(legacy, strict=True)
    assert torch.equal(fresh.stem[1].bn.running_var, own["stem.1.bn.running_var"] + 1)
    assert torch.equal(
        fresh.layer1[0].downsample[0].weight, own["layer1.0.downsample.0.weight"] + 1
    )


def test_resnet_cifar_stem_and_output():
    model = ResNet_CIFAR(depth=18).eval()
    assert tuple(model.conv1.weight.shape) == (64, 3, 3, 3) and not hasattr(model, "maxpool")
    assert model(torch.randn(1, 3, 32, 32))[-1].shape == (1, 512, 4, 4)
    with pytest.raises(ValueError, match="deep_stem"):
        ResNet_CIFAR(depth=18, deep_stem=True)


def test_drop_path_rate_rises_linearly_over_the_blocks():
    # MMPretrain: linspace(0, drop_path_rate, all blocks of the arch), block by block
    model = ResNet(18, drop_path_rate=0.1)
    blocks = [b for name in model.res_layers for b in getattr(model, name)]
    rates = [0.0 if isinstance(b.drop_path, nn.Identity) else b.drop_path.drop_prob for b in blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.1, 8).tolist())


def test_bad_arguments_are_loud():
    with pytest.raises(KeyError, match="invalid depth 20"):
        ResNet(20)
    with pytest.raises(TypeError, match="fixes deep_stem"):
        ResNetV1c(depth=50, deep_stem=False)
    with pytest.raises(NotImplementedError, match="dcn"):
        ResNet(50, dcn=dict(type="DCNv2"))
    with pytest.raises(ValueError, match="strides"):
        ResNet(18, num_stages=3)
