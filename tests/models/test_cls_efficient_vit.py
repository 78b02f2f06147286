"""The efficient vision transformers of the classification zoo (MobileViT, EfficientFormer,
EdgeNeXt, LeViT, TinyViT) and their heads at tiny sizes: output shapes for every stage, a
backward pass reaching every parameter, frozen stages, LeViT's ``switch_to_deploy()``
giving the training model's eval outputs with the keys of a ``deploy=True`` build, the
distilled heads, the attention-bias table against a naive loop, and argument errors.
Key layouts and outputs against MMPretrain's own configs are the oracle tests' job
(tests/upstream/test_cls_keys.py, test_cls_numeric.py)."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.data.structures import DataSample
from vistra.models.layers.levit_attention_bias import attention_bias_index, biased_attention
from vistra.registry import MODELS

# tiny archs that keep every code path: MobileViT's resize before unfolding (odd maps),
# EfficientFormer's 3D blocks, EdgeNeXt's SDTA encoders with position encoding, LeViT's
# shrinking attention, TinyViT's partitioned and padded windows
TINY = {
    "MobileViT": dict(
        arch=[["mobilenetv2", 8, 1, 1, 2], ["mobilenetv2", 8, 2, 2, 2],
              ["mobilevit", 16, 2, 16, 32, 1, 2], ["mobilevit", 16, 2, 16, 32, 1, 2],
              ["mobilevit", 24, 2, 24, 48, 2, 2]],
        stem_channels=8, out_indices=(0, 1, 2, 3, 4),
    ),
    "EfficientFormer": dict(
        # one downsampling stage: the 7x7 grid of the attention bias from 56x56 inputs
        arch=dict(layers=[1, 1, 1, 2], embed_dims=[8, 8, 8, 16],
                  downsamples=[False, False, False, True], vit_num=1),
        out_indices=(0, 1, 2, 3), drop_path_rate=0.1,
    ),
    "EdgeNeXt": dict(
        arch=dict(channels=[8, 16, 24, 32], depths=[1, 2, 2, 2], num_heads=[2, 2, 2, 2]),
        out_indices=(0, 1, 2, 3), use_pos_embd_global=True, drop_path_rate=0.1,
    ),
    "LeViT": dict(
        arch=dict(embed_dims=[16, 24, 32], key_dims=[4, 4, 4], num_heads=[2, 3, 4],
                  depths=[1, 1, 1]),
        img_size=64, out_indices=(0, 1, 2),
    ),
    "TinyViT": dict(
        arch=dict(channels=[8, 16, 16, 24], num_heads=[1, 2, 2, 3], depths=[1, 2, 1, 1]),
        img_size=(64, 64), window_size=[4, 4, 4, 3], out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
    ),
}  # fmt: skip
SIZES = {"MobileViT": (36, 36), "EfficientFormer": (56, 56), "LeViT": (64, 64)}
# (C, H, W) of each output, or (C,) for pooled ones
SHAPES = {
    "MobileViT": [(8, 18, 18), (8, 9, 9), (16, 5, 5), (16, 3, 3), (96, 2, 2)],
    "EfficientFormer": [(8, 14, 14), (8, 14, 14), (8, 14, 14), (16, 49)],
    "EdgeNeXt": [(8,), (16,), (24,), (32,)],
    "LeViT": [(16, 4, 4), (24, 2, 2), (32, 1, 1)],
    "TinyViT": [(16,), (16,), (24,), (24,)],
}
FROZEN = {
    "MobileViT": "layers",
    "EfficientFormer": "network",
    "EdgeNeXt": "stages",
    "TinyViT": "stages",
}


def _build(name: str, **overrides) -> nn.Module:
    return MODELS.build(dict(type=name, **{**TINY[name], **overrides}))


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size = SIZES.get(name, (32, 32) if name != "TinyViT" else (64, 64))
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("name", list(TINY))
def test_output_shapes_and_backward(name):
    model = _build(name)
    model.init_weights()
    model.train()
    outs = model(_input(name))
    assert [tuple(o.shape[1:]) for o in outs] == SHAPES[name]
    assert all(o.shape[0] == 2 for o in outs)
    sum(o.pow(2).mean() for o in outs).backward()
    # every parameter feeds the last output (attention biases through the SDPA mask)
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad
    # (a 1x1 grid has one offset: a constant logit shift, which softmax ignores)
    biases = [p for n, p in model.named_parameters() if n.endswith("attention_biases")]
    assert all(p.grad.abs().sum() > 0 for p in biases if p.shape[1] > 1)


@pytest.mark.parametrize("name", list(FROZEN))
def test_frozen_stages(name):
    model = _build(name, frozen_stages=2)
    model.train()
    stages = getattr(model, FROZEN[name])
    for i, stage in enumerate(stages):
        frozen = i < 2
        assert all(p.requires_grad is not frozen for p in stage.parameters()), i
        assert all(m.training is not frozen for m in stage.modules()), i


def test_efficientformer_freezes_the_stem_from_zero_and_reshapes_its_last_stage():
    model = _build("EfficientFormer", frozen_stages=0, reshape_last_feat=True)
    model.train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert all(p.requires_grad for p in model.network.parameters())
    assert isinstance(model.norm3, nn.GroupNorm)  # channel-first norm for the map
    assert tuple(model(_input("EfficientFormer"))[-1].shape) == (2, 16, 7, 7)


def test_tinyvit_and_edgenext_maps_without_pooling():
    tiny = _build("TinyViT", gap_before_final_norm=False).eval()
    shapes = [tuple(o.shape[1:]) for o in tiny(_input("TinyViT"))]
    assert shapes == [(16, 8, 8), (16, 4, 4), (24, 2, 2), (24, 2, 2)]
    edge = _build("EdgeNeXt", gap_before_final_norm=False).eval()
    shapes = [tuple(o.shape[1:]) for o in edge(_input("EdgeNeXt"))]
    assert shapes == [(8, 8, 8), (16, 4, 4), (24, 2, 2), (32, 1, 1)]


def _levit_classifier(**overrides) -> tuple[nn.Module, nn.Module]:
    backbone = _build("LeViT", out_indices=(2,), **overrides)
    head = MODELS.build(dict(type="LeViTClsHead", num_classes=5, in_channels=32, **overrides))
    return backbone, head


def _levit_logits(backbone: nn.Module, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    feat = backbone(x)[-1].mean((2, 3))  # GlobalAveragePooling
    return head((feat,))


def test_levit_deploy_equals_train_mode_eval_outputs():
    backbone, head = _levit_classifier()
    _randomise_bn(backbone)
    _randomise_bn(head, seed=1)
    with torch.no_grad():  # attention biases away from their zero init
        for name, p in backbone.named_parameters():
            if name.endswith("attention_biases"):
                p.normal_()
    backbone.eval()
    head.eval()
    x = _input("LeViT")
    with torch.no_grad():
        expected = _levit_logits(backbone, head, x)
        deployed_backbone, deployed_head = copy.deepcopy(backbone), copy.deepcopy(head)
        deployed_backbone.switch_to_deploy()
        deployed_head.switch_to_deploy()
        deployed_backbone.switch_to_deploy()  # a second call changes nothing
        got = _levit_logits(deployed_backbone, deployed_head, x)
    assert (got - expected).abs().max() <= 1e-4
    assert not any(isinstance(m, _BatchNorm) for m in deployed_backbone.modules())
    assert not any(isinstance(m, _BatchNorm) for m in deployed_head.modules())
    # the same keys and shapes as a model built with deploy=True
    built_backbone, built_head = _levit_classifier(deploy=True)
    for ours, built in ((deployed_backbone, built_backbone), (deployed_head, built_head)):
        shapes = {k: v.shape for k, v in ours.state_dict().items()}
        assert shapes == {k: v.shape for k, v in built.state_dict().items()}
    assert "patch_embed.patch_embed.0.bias" in deployed_backbone.state_dict()
    assert {"head.weight", "head.bias", "head_dist.bias"} <= set(deployed_head.state_dict())


def test_distilled_heads_average_and_train_with_a_warning():
    feats = (torch.randn(4, 16),)
    samples = [DataSample().set_gt_label(i % 3) for i in range(4)]
    for cfg in (
        dict(type="EfficientFormerClsHead", num_classes=3, in_channels=16),
        dict(type="LeViTClsHead", num_classes=3, in_channels=16),
    ):
        head = MODELS.build(cfg)
        head.init_weights()
        head.eval()
        first, second = (head.head, head.dist_head) if hasattr(head, "dist_head") else (
            head.head, head.head_dist)  # fmt: skip
        with torch.no_grad():
            expected = (first(feats[0]) + second(feats[0])) / 2
            assert torch.allclose(head(feats), expected)
        head.train()
        with pytest.warns(UserWarning, match="distilled head"):
            loss = head.loss(feats, samples)["loss"]
        loss.backward()
        assert all(p.grad is not None for p in head.parameters())
        single = MODELS.build({**cfg, "distillation": False})
        assert not hasattr(single, "dist_head") and not hasattr(single, "head_dist")


def _naive_index(res: tuple[int, int], stride: int) -> torch.Tensor:
    keys = list(itertools.product(range(res[0]), range(res[1])))
    queries = [(y * stride, x * stride) for y, x in itertools.product(
        range((res[0] - 1) // stride + 1), range((res[1] - 1) // stride + 1))]  # fmt: skip
    offsets: dict[tuple[int, int], int] = {}
    idxs = [
        offsets.setdefault((abs(qy - ky), abs(qx - kx)), len(offsets))
        for qy, qx in queries
        for ky, kx in keys
    ]
    return torch.tensor(idxs).view(len(queries), len(keys))


@pytest.mark.parametrize(("res", "stride"), [((4, 4), 1), ((7, 7), 2), ((3, 5), 1), ((5, 4), 2)])
def test_attention_bias_index_numbers_offsets_by_first_occurrence(res, stride):
    assert torch.equal(attention_bias_index(res, stride), _naive_index(res, stride))


def test_biased_attention_is_softmax_attention_plus_bias():
    module = nn.Module()
    module.attention_biases = nn.Parameter(torch.randn(2, 9))
    module.attention_bias_idxs = attention_bias_index((3, 3))
    q, k, v = (torch.randn(2, 2, 9, d) for d in (4, 4, 6))
    bias = module.attention_biases[:, module.attention_bias_idxs]
    expected = F.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, dim=-1) @ v
    assert torch.allclose(biased_attention(q, k, v, module, 0.5), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("cfg", "words"),
    [
        (dict(type="MobileViT", arch="tiny"), ["arch", "xx_small"]),
        (dict(type="MobileViT", arch=[["conv", 8, 1]]), ["arch", "mobilevit"]),
        (dict(type="MobileViT", frozen_stages=5), ["frozen_stages", "range(-1, 5)"]),
        (dict(type="MobileViT", out_indices=(5,)), ["out_indices", "5"]),
        (dict(type="EfficientFormer", arch="l2"), ["arch", "'l1'"]),
        (dict(type="EfficientFormer", arch=dict(layers=[1]) ), ["arch", "vit_num"]),
        (dict(type="EfficientFormer", out_indices=4), ["out_indices"]),
        (dict(type="EdgeNeXt", arch="tiny"), ["arch", "xxsmall"]),
        (dict(type="EdgeNeXt", global_block_type=["None", "MHSA", "SDTA", "SDTA"]),
         ["global_block_type", "SDTA"]),
        (dict(type="EdgeNeXt", out_indices=(0, 7)), ["out_indices"]),
        (dict(type="LeViT", arch="999"), ["arch", "128s"]),
        (dict(type="LeViT", arch=["128s"]), ["arch"]),
        (dict(type="LeViT", arch="128s", out_indices=3), ["out_indices"]),
        (dict(type="TinyViT", arch="7m"), ["arch", "5m"]),
        (dict(type="TinyViT", window_size=[7, 7]), ["window_size"]),
        (dict(type="TinyViT", out_indices=(-5,)), ["out_indices"]),
        (dict(type="LeViTClsHead", num_classes=10), ["in_channels"]),
        (dict(type="EfficientFormerClsHead", num_classes=0, in_channels=8), ["num_classes"]),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_argument(cfg, words):
    with pytest.raises((ValueError, TypeError)) as info:
        MODELS.build(cfg)
    message = str(info.value)
    assert all(word in message for word in words), message
