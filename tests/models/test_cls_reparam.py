"""The re-parameterisable classification backbones (RepVGG, MobileOne, RepMLPNet, RepLKNet,
RIFormer) at tiny sizes: output shapes, a backward pass, frozen stages, argument errors,
``switch_to_deploy()`` giving the training model's eval outputs (random BN statistics) with
the keys of the model built with ``deploy=True``, and tools/model_converters/
reparameterize_model.py (through a real subprocess, and in-process for the other families
and the error lines). Key layouts and outputs against MMPretrain's own configs are the
oracle tests' job (tests/upstream/test_cls_keys.py, test_cls_numeric.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from numeric_support import build_vistra_model
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.checkpoint import (
    extract_state_dict,
    load_checkpoint_file,
    load_state_dict,
    save_checkpoint,
)
from vistra.models.layers.reparam import fuse_bn_identity, fuse_conv_bn, pad_kernel
from vistra.registry import MODELS

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "model_converters" / "reparameterize_model.py"
TOL = 1e-4

# tiny archs that keep every branch kind: groups with an identity branch, SE layers, several
# conv branches, small kernels beside large ones, share-sets, non-square patches
TINY = {
    "RepVGG": dict(
        arch=dict(num_blocks=[1, 2, 1, 1], width_factor=[0.5, 0.5, 0.5, 0.5],
                  group_layer_map={3: 2}, se_cfg=dict(ratio=4, divisor=1), stem_channels=8),
        base_channels=16, out_indices=(0, 1, 2, 3),
    ),
    "MobileOne": dict(
        arch=dict(num_blocks=[1, 2, 1, 1], width_factor=[0.25, 0.25, 0.25, 0.25],
                  num_conv_branches=[2, 2, 1, 1], num_se_blocks=[0, 1, 0, 1]),
        out_indices=(0, 1, 2, 3),
    ),
    "RepMLPNet": dict(
        arch=dict(channels=[8, 16, 16, 32], depths=[1, 1, 1, 1], sharesets_nums=[1, 2, 4, 8]),
        img_size=(32, 48), reparam_conv_kernels=(1, 3), out_indices=(0, 1, 2, 3),
    ),
    "RepLKNet": dict(
        arch=dict(large_kernel_sizes=[7, 5, 5, 3], layers=[1, 1, 1, 1], channels=[8, 16, 16, 32],
                  small_kernel=3, dw_ratio=1.5),
        out_indices=(0, 1, 2, 3), drop_path_rate=0.1,
    ),
    "RIFormer": dict(
        arch=dict(layers=[1, 1, 1, 1], embed_dims=[8, 16, 24, 32]), out_indices=(0, 2, 4, 6),
        drop_path_rate=0.1,
    ),
}  # fmt: skip
# (C, H, W) of each output for a 32x32 input (RepMLPNet: 32x48, its img_size)
SHAPES = {
    "RepVGG": [(8, 8, 8), (16, 4, 4), (32, 2, 2), (64, 1, 1)],
    "MobileOne": [(16, 8, 8), (32, 4, 4), (64, 2, 2), (128, 1, 1)],
    # MMPretrain's RepMLPNet returns stages 0-2 after their downsampling layer
    "RepMLPNet": [(16, 4, 6), (16, 2, 3), (32, 1, 1), (32, 1, 1)],
    "RepLKNet": [(8, 8, 8), (16, 4, 4), (16, 2, 2), (32, 1, 1)],
    "RIFormer": [(8, 8, 8), (16, 4, 4), (24, 2, 2), (32, 1, 1)],
}
DEPLOY_ARG = {"RepLKNet": "small_kernel_merged"}


def _build(name: str, **overrides) -> torch.nn.Module:
    return MODELS.build(dict(type=name, **{**TINY[name], **overrides}))


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size = (32, 48) if name == "RepMLPNet" else (32, 32)
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BN statistics and affine parameters (and RIFormer's affine mixers), so that
    every fusion term is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, _BatchNorm):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
            if isinstance(module, _BatchNorm | torch.nn.GroupNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            if name.endswith("token_mixer.affine"):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
        for name, param in model.named_parameters():
            if "layer_scale" in name:  # 1e-5 would hide the mixer; make it count
                param.copy_(torch.rand(param.shape, generator=gen) + 0.5)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", list(TINY))
def test_forward_shapes_and_backward(name):
    model = _build(name)
    model.init_weights()
    model.train()
    x = _input(name)
    outs = model(x)
    assert isinstance(outs, tuple)
    assert [tuple(o.shape[1:]) for o in outs] == SHAPES[name]
    sum(o.mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list(TINY))
def test_deploy_model_has_the_same_output_shapes(name):
    model = _build(name, **{DEPLOY_ARG.get(name, "deploy"): True}).eval()
    with torch.no_grad():
        outs = model(_input(name))
    assert [tuple(o.shape[1:]) for o in outs] == SHAPES[name]


def test_with_cp_gives_the_same_gradients():
    for name in ("RepVGG", "RepLKNet"):
        torch.manual_seed(0)
        plain = _build(name)
        torch.manual_seed(0)
        checkpointed = _build(name, with_cp=True)
        checkpointed.load_state_dict(plain.state_dict())
        plain.eval(), checkpointed.eval()  # no drop path: the two runs draw alike
        x = _input(name).requires_grad_()
        sum(o.sum() for o in plain(x)).backward()
        grad = x.grad.clone()
        x.grad = None
        sum(o.sum() for o in checkpointed(x)).backward()
        assert torch.allclose(x.grad, grad, atol=1e-5), name


def test_repvgg_ppf_and_repmlp_arch_names():
    model = _build("RepVGG", add_ppf=True, out_indices=(3,))
    assert "ppf.conv1.conv.weight" in model.state_dict()
    assert model(_input("RepVGG"))[0].shape[1:] == (64, 1, 1)
    # MMPretrain's configs write arch='B': the table matches in any case
    assert MODELS.build(dict(type="RepMLPNet", arch="B", img_size=32)).channels[-1] == 768


# ----------------------------------------------------------------------------- deploy
@pytest.mark.parametrize("name", list(TINY))
def test_switch_to_deploy_gives_the_training_outputs(name):
    model = _build(name).eval()
    _randomise_norms(model)
    x = _input(name)
    with torch.no_grad():
        before = model(x)
    model.switch_to_deploy()
    with torch.no_grad():
        after = model(x)
    for a, b in zip(before, after):
        scale = max(1.0, a.abs().max().item())
        assert (a - b).abs().max().item() <= TOL * scale, name
    # the switched model's keys are those of the model built for deployment, and its
    # state loads strictly there with the same outputs
    deployed = _build(name, **{DEPLOY_ARG.get(name, "deploy"): True}).eval()
    theirs = {k: tuple(v.shape) for k, v in deployed.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == theirs
    deployed.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        for a, b in zip(after, deployed(x)):
            assert torch.equal(a, b)
    model.switch_to_deploy()  # a second switch is a no-op
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == theirs


def test_repmlp_without_local_branches_and_replknet_without_small_kernel_fuse():
    cases = [
        ("RepMLPNet", dict(reparam_conv_kernels=None)),
        ("RepLKNet", dict(arch={**TINY["RepLKNet"]["arch"], "small_kernel": None})),
    ]
    for name, overrides in cases:
        model = _build(name, **overrides).eval()
        _randomise_norms(model, seed=3)
        x = _input(name)
        with torch.no_grad():
            before = model(x)
            model.switch_to_deploy()
            after = model(x)
        assert all((a - b).abs().max() <= TOL for a, b in zip(before, after)), name


def test_fusion_helpers_are_exact_on_one_block():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False)
    bn = torch.nn.BatchNorm2d(6).eval()
    _randomise_norms(bn)
    x = torch.randn(2, 4, 5, 5)
    weight, bias = fuse_conv_bn(conv.weight, bn)
    fused = torch.nn.functional.conv2d(x.double(), weight, bias, padding=1, groups=2)
    assert torch.allclose(fused.float(), bn(conv(x)), atol=1e-5)
    # a BN identity as a grouped 3x3 conv
    identity_bn = torch.nn.BatchNorm2d(4).eval()
    _randomise_norms(identity_bn, seed=1)
    weight, bias = fuse_bn_identity(identity_bn, groups=2, kernel_size=3)
    out = torch.nn.functional.conv2d(x.double(), weight, bias, padding=1, groups=2)
    assert torch.allclose(out.float(), identity_bn(x), atol=1e-5)
    # a 1x1 kernel padded to 3x3 is the same conv with padding 1
    one = torch.randn(6, 2, 1, 1)
    assert torch.allclose(
        torch.nn.functional.conv2d(x, pad_kernel(one, 3), padding=1, groups=2),
        torch.nn.functional.conv2d(x, one, groups=2),
        atol=1e-6,
    )


def test_switch_to_deploy_refuses_a_norm_it_cannot_fold():
    model = _build("RepVGG", norm_cfg=dict(type="GN", num_groups=1))
    with pytest.raises(ValueError, match="BatchNorm.*GroupNorm"):
        model.switch_to_deploy()


# ----------------------------------------------------------------------------- freezing
@pytest.mark.parametrize(
    ("name", "frozen", "first_free", "stem"),
    [
        ("RepVGG", ["stem", "stage_1"], "stage_2", "stem"),
        ("MobileOne", ["stage0", "stage1"], "stage2", "stage0"),
        ("RepLKNet", ["stem", "stages.0"], "stages.1", "stem"),
        # MMPretrain's RIFormer freezes network[0..frozen_stages]
        (
            "RIFormer",
            ["patch_embed", "network.0", "network.1", "norm0"],
            "network.2",
            "patch_embed",
        ),
    ],
)
def test_frozen_stages(name, frozen, first_free, stem):
    model = _build(name, frozen_stages=1)
    model.train()
    for pname, param in model.named_parameters():
        if any(pname.startswith(prefix + ".") for prefix in frozen):
            assert not param.requires_grad, pname
        if pname.startswith(first_free + "."):
            assert param.requires_grad, pname
    assert not model.get_submodule(stem).training
    assert model.get_submodule(first_free).training


def test_frozen_stages_minus_one_freezes_nothing_and_norm_eval():
    for name in ("RepVGG", "MobileOne", "RepLKNet", "RIFormer"):
        model = _build(name).train()
        assert all(p.requires_grad for p in model.parameters()), name
    model = _build("MobileOne", norm_eval=True).train()
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("name", "overrides", "names"),
    [
        ("RepVGG", dict(arch="Z9"), "arch"),
        ("RepVGG", dict(out_indices=(4,)), "out_indices"),
        ("RepVGG", dict(strides=(2, 2)), "strides"),
        (
            "RepVGG",
            dict(
                arch=dict(
                    num_blocks=[1, 1, 1, 1], width_factor=[1, 1, 1, 1], group_layer_map={9: 2}
                )
            ),
            "group_layer_map",
        ),  # fmt: skip
        ("MobileOne", dict(arch="s9"), "arch"),
        (
            "MobileOne",
            dict(
                arch=dict(
                    num_blocks=[1, 1, 1],
                    width_factor=[1, 1, 1],
                    num_conv_branches=[1, 1, 1],
                    num_se_blocks=[0, 0, 0],
                )
            ),
            "num_blocks",
        ),  # fmt: skip
        (
            "MobileOne",
            dict(arch={**TINY["MobileOne"]["arch"], "num_se_blocks": [2, 0, 0, 0]}),
            "num_se_blocks",
        ),  # fmt: skip
        ("MobileOne", dict(out_indices=(-5,)), "out_indices"),
        ("RepMLPNet", dict(arch=dict(channels=[8], depths=[1])), "arch"),
        ("RepMLPNet", dict(arch="huge"), "arch"),
        ("RepLKNet", dict(arch="31X"), "arch"),
        ("RepLKNet", dict(out_indices=(7,)), "out_indices"),
        ("RIFormer", dict(arch="s99"), "arch"),
        ("RIFormer", dict(frozen_stages=9), "frozen_stages"),
    ],
)
def test_bad_arguments_name_the_argument(name, overrides, names):
    with pytest.raises((ValueError, TypeError), match=names):
        _build(name, **overrides)


def test_repmlp_names_its_fixed_input_size():
    with pytest.raises(ValueError, match="img_size"):
        _build("RepMLPNet")(torch.randn(1, 3, 32, 32))


# ----------------------------------------------------------------------------- converter
def _configs(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A tiny classifier config of the family and its deploy config (``_base_`` + the
    deploy flag, as MMPretrain's ``*_deploy_*`` configs are written)."""
    backbone = dict(type=name, **{**TINY[name], "out_indices": (3,)})
    if name == "RIFormer":
        backbone["out_indices"] = -1
    width = SHAPES[name][-1][0]
    train = tmp_path / f"{name.lower()}_train.py"
    train.write_text(
        f"model = dict(type='ImageClassifier', backbone={backbone!r},\n"
        "    neck=dict(type='GlobalAveragePooling'),\n"
        f"    head=dict(type='LinearClsHead', num_classes=5, in_channels={width}))\n"
    )
    deploy = tmp_path / f"{name.lower()}_deploy.py"
    flag = DEPLOY_ARG.get(name, "deploy")
    deploy.write_text(f"_base_ = './{train.name}'\nmodel = dict(backbone=dict({flag}=True))\n")
    return train, deploy


def _training_checkpoint(config: Path, path: Path) -> tuple[torch.nn.Module, Path]:
    model = build_vistra_model(config)
    _randomise_norms(model, seed=7)
    save_checkpoint(
        {"meta": {"epoch": 3}, "state_dict": model.state_dict(), "optimizer": {"state": {}}},
        path,
    )
    return model, path


def _check_converted(train_model, deploy_config: Path, target: Path, name: str) -> None:
    ckpt = load_checkpoint_file(target)
    assert set(ckpt) == {"meta", "state_dict"}
    assert ckpt["meta"]["epoch"] == 3
    deployed = build_vistra_model(deploy_config)
    report = load_state_dict(deployed, extract_state_dict(ckpt), source=str(target))
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    x = _input(name)
    with torch.no_grad():
        want, got = train_model(x, mode="tensor"), deployed(x, mode="tensor")
    assert (want - got).abs().max().item() <= TOL * max(1.0, want.abs().max().item())


def test_converter_cli_in_a_subprocess(tmp_path):
    train, deploy = _configs(tmp_path, "RepVGG")
    model, ckpt = _training_checkpoint(train, tmp_path / "epoch_3.pth")
    target = tmp_path / "out" / "repvgg_deploy.pth"
    proc = subprocess.run(
        [sys.executable, str(TOOL), str(train), str(ckpt), str(target)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"deploy checkpoint saved to {target}" in proc.stdout
    _check_converted(model.eval(), deploy, target, "RepVGG")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("reparameterize_model", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["MobileOne", "RepMLPNet", "RepLKNet", "RIFormer"])
def test_converter_for_each_family(tool, tmp_path, name):
    train, deploy = _configs(tmp_path, name)
    model, ckpt = _training_checkpoint(train, tmp_path / "train.pth")
    target = tmp_path / "deploy.pth"
    assert tool.main([str(train), str(ckpt), str(target)]) == 0
    _check_converted(model.eval(), deploy, target, name)


def test_converter_errors_are_one_line(tool, tmp_path, capsys):
    train, deploy = _configs(tmp_path, "RepVGG")
    _, ckpt = _training_checkpoint(train, tmp_path / "train.pth")
    resnet = tmp_path / "resnet.py"
    resnet.write_text(
        "model = dict(type='ImageClassifier', backbone=dict(type='ResNet_CIFAR', depth=18,\n"
        "    stem_channels=8, base_channels=8), neck=dict(type='GlobalAveragePooling'),\n"
        "    head=dict(type='LinearClsHead', num_classes=5, in_channels=64))\n"
    )
    out = str(tmp_path / "x.pth")
    cases = [
        ([str(tmp_path / "nope.py"), str(ckpt), out], "config file not found"),
        ([str(train), str(tmp_path / "nope.pth"), out], "checkpoint file not found"),
        ([str(train), str(ckpt), str(tmp_path / "x.txt")], "must name a checkpoint file"),
        ([str(train), str(ckpt), str(tmp_path)], "must name a checkpoint file"),
        ([str(train), str(ckpt), str(ckpt)], "is CHECKPOINT itself"),
        ([str(resnet), str(ckpt), out], "ResNet_CIFAR .* has no switch_to_deploy"),
        ([str(deploy), str(ckpt), out], "CONFIG builds the deploy model"),
    ]
    for argv, message in cases:
        assert tool.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "x.pth").exists()
    # converting a converted checkpoint again is refused with the reason
    assert tool.main([str(train), str(ckpt), out]) == 0
    assert tool.main([str(train), out, str(tmp_path / "y.pth")]) == 2
    assert "converted already" in capsys.readouterr().err
