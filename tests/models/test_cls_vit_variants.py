"""ViT variants of the classification zoo at tiny sizes: distilled DeiT and its head, DeiT III,
BEiTViT, EVA-02, ViTSAM, RevViT, HiViT and LoRA. Output shapes per ``out_indices``, one
backward pass, ``frozen_stages``, the checkpoint hooks, and the error messages of bad
arguments. (Keys and numbers against MMPretrain: tests/upstream/.)
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vistra.models.backbones.beit import BEiTViT
from vistra.models.backbones.hivit import HiViT
from vistra.models.backbones.revvit import RevVisionTransformer
from vistra.models.backbones.vision_transformer import VisionTransformer
from vistra.models.backbones.vit_sam import window_partition, window_unpartition
from vistra.models.layers.relative_position_bias import (
    RelativePositionBias,
    relative_position_index,
)
from vistra.models.layers.rope import RotaryEmbeddingFast, rope_angles, rotate_pairs
from vistra.models.utils.lora import LoRALinear, LoRAModel
from vistra.registry import MODELS

VIT = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
SAM = dict(VIT, global_attn_indexes=[1])
HIVIT = dict(embed_dims=32, depths=[1, 1, 8], num_heads=2)
IMG = dict(img_size=32, patch_size=8)  # a 4x4 patch grid

# (config, expected output shapes for a batch of 2 at 32x32)
CASES = {
    "deit-distilled": (
        dict(type="DistilledVisionTransformer", arch=VIT, **IMG, out_indices=(0, 1)),
        [((2, 32), (2, 32))] * 2,
    ),
    "deit3": (dict(type="DeiT3", arch=VIT, **IMG, out_type="featmap"), [(2, 32, 4, 4)]),
    "beit": (dict(type="BEiTViT", arch=VIT, **IMG, out_indices=(0, 1)), [(2, 32)] * 2),
    "beit-shared-abs": (
        dict(
            type="BEiTViT",
            arch=VIT,
            **IMG,
            use_abs_pos_emb=True,
            use_rel_pos_bias=False,
            use_shared_rel_pos_bias=True,
            out_type="raw",
        ),
        [(2, 17, 32)],
    ),
    "eva02": (
        dict(type="ViTEVA02", arch=VIT, **IMG, sub_ln=True, out_type="avg_featmap"),
        [(2, 32)],
    ),
    "vit-sam": (
        dict(type="ViTSAM", arch=SAM, **IMG, window_size=3, out_channels=16, out_indices=(0, 1)),
        [(2, 16, 4, 4)] * 2,
    ),
    "revvit": (dict(type="RevVisionTransformer", arch=VIT, **IMG), [(2, 64)]),
    "hivit": (
        dict(type="HiViT", arch=HIVIT, img_size=32, patch_size=16, rpe=True),
        [(2, 32, 2, 2)],  # out_indices' last entry is always the last main block
    ),
}


def _shapes(outputs):
    return [
        tuple(tuple(t.shape) for t in o) if isinstance(o, tuple) else tuple(o.shape)
        for o in outputs
    ]


def _total(outputs) -> torch.Tensor:
    return sum(t.sum() for o in outputs for t in (o if isinstance(o, tuple) else (o,)))


@pytest.mark.parametrize("name", list(CASES))
def test_forward_shapes_and_backward(name):
    torch.manual_seed(0)
    cfg, shapes = CASES[name]
    model = MODELS.build(dict(cfg))
    model.init_weights()
    outputs = model(torch.randn(2, 3, 32, 32))
    assert _shapes(outputs) == shapes
    _total(outputs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads[:4])


def test_hivit_out_indices_select_stem_and_main_blocks_alike():
    model = HiViT(arch=HIVIT, img_size=32, patch_size=16, out_indices=[4, 0])
    assert model.out_indices == [4, 7]  # the last entry: the last main block
    outs = model(torch.randn(1, 3, 32, 32))
    # stem block 4 (2x2 sub-patches of width 16 per patch), main blocks 4 and 7, as upstream
    assert [tuple(o.shape) for o in outs] == [(1, 16, 4, 4), (1, 32, 2, 2), (1, 32, 2, 2)]


@pytest.mark.parametrize("name", ["beit", "eva02", "vit-sam", "revvit", "hivit"])
def test_frozen_stages_freeze_embeddings_and_first_layer_and_stay_in_eval(name):
    cfg = dict(CASES[name][0], frozen_stages=1)
    model = MODELS.build(cfg)
    model.train()
    blocks = model.blocks if name == "hivit" else model.layers
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not blocks[0].training and blocks[-1].training


# ----------------------------------------------------------------------------- DeiT
def test_deit_head_averages_its_two_classifiers():
    head = MODELS.build(dict(type="DeiTClsHead", num_classes=5, in_channels=8, init_cfg=None))
    assert {k for k in head.state_dict()} == {
        "layers.head.weight",
        "layers.head.bias",
        "layers.head_dist.weight",
        "layers.head_dist.bias",
    }
    cls_token, dist_token = torch.randn(2, 8), torch.randn(2, 8)
    logits = head.eval()(((cls_token, dist_token),))
    expected = (head.layers.head(cls_token) + head.layers.head_dist(dist_token)) / 2
    torch.testing.assert_close(logits, expected)
    with pytest.raises(TypeError, match="cls_token, dist_token"):
        head((torch.randn(2, 8),))


def test_distilled_deit_pos_embed_covers_two_extra_tokens():
    model = MODELS.build(CASES["deit-distilled"][0])
    assert model.pos_embed.shape == (1, 16 + 2, 32) and model.dist_token.shape == (1, 1, 32)


def test_deit3_ffn_reads_ln1_as_upstream_and_pos_embed_has_no_cls_row():
    model = MODELS.build(CASES["deit3"][0]).eval()
    assert model.pos_embed.shape == (1, 16, 32)
    x = torch.randn(1, 3, 32, 32)
    before = model(x)[0]
    with torch.no_grad():
        for layer in model.layers:
            layer.ln2.weight.mul_(3.0)
    torch.testing.assert_close(model(x)[0], before)  # ln2 takes no part


# ----------------------------------------------------------------------------- BEiT
def test_relative_position_bias_matches_the_offsets_it_indexes():
    index = relative_position_index((3, 4), with_cls_token=False)
    coords = [(i, j) for i in range(3) for j in range(4)]
    for q, (qi, qj) in enumerate(coords):
        for k, (ki, kj) in enumerate(coords):
            assert index[q, k] == (qi - ki + 2) * 7 + (qj - kj + 3)
    bias = RelativePositionBias((3, 4), num_heads=2)
    assert bias().shape == (2, 13, 13)


def test_beit_expands_a_shared_table_and_resizes_tables_of_another_grid():
    model = BEiTViT(arch=VIT, **IMG)  # a 4x4 grid: (7 * 7 + 3) rows
    state = {k: v for k, v in model.state_dict().items() if "relative_position" not in k}
    shared = torch.randn(7 * 7 + 3, 2)
    state["rel_pos_bias.relative_position_bias_table"] = shared
    state["rel_pos_bias.relative_position_index"] = relative_position_index((4, 4))
    model.load_state_dict(state)
    for layer in model.layers:
        torch.testing.assert_close(layer.attn.relative_position_bias_table, shared)
    # a checkpoint made for a 6x6 grid loads into the 4x4 model
    other = BEiTViT(arch=VIT, img_size=48, patch_size=8).state_dict()
    result = model.load_state_dict(other)
    assert not result.missing_keys and not result.unexpected_keys
    assert model.layers[0].attn.relative_position_bias_table.shape == (52, 2)


def test_beit_needs_the_grid_its_bias_was_made_for():
    model = BEiTViT(arch=VIT, **IMG)
    with pytest.raises(ValueError, match="img_size"):
        model(torch.randn(1, 3, 48, 48))


# ----------------------------------------------------------------------------- EVA-02
def test_rope_rotates_pairs_and_keeps_its_buffers_at_another_grid():
    x = torch.arange(4.0).reshape(1, 1, 1, 4)
    torch.testing.assert_close(rotate_pairs(x), torch.tensor([[[[-1.0, 0.0, -3.0, 2.0]]]]))
    rope = RotaryEmbeddingFast(8, (2, 2))
    assert rope.freqs_cos.shape == (4, 8)
    q = torch.randn(1, 1, 9, 8)
    angles = rope_angles(8, (3, 3))
    torch.testing.assert_close(rope(q, (3, 3)), q * angles.cos() + rotate_pairs(q) * angles.sin())
    assert rope.freqs_cos.shape == (4, 8)  # not replaced: checkpoints keep their shapes
    torch.testing.assert_close(rope(q, (3, 3))[..., 0, :], q[..., 0, :])  # patch (0, 0): angle 0


def test_eva02_shares_one_rope_and_runs_at_another_size():
    model = MODELS.build(CASES["eva02"][0]).eval()
    assert all(layer.attn.rope is model.rope for layer in model.layers)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert model(torch.randn(1, 3, 48, 48))[0].shape == (1, 32)
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes


# ----------------------------------------------------------------------------- SAM
def test_window_partition_pads_and_unpartition_restores():
    x = torch.randn(2, 5, 7, 3)
    windows, padded = window_partition(x, 3)
    assert windows.shape == (2 * 2 * 3, 3, 3, 3) and padded == (6, 9)
    torch.testing.assert_close(window_unpartition(windows, 3, padded, (5, 7)), x)


def test_vit_sam_resizes_relative_embeddings_of_another_img_size():
    small = MODELS.build(CASES["vit-sam"][0])
    big = MODELS.build(dict(CASES["vit-sam"][0], img_size=64))  # global layer: 8x8 grid
    result = small.load_state_dict(big.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert small.layers[1].attn.rel_pos_h.shape == (7, 16)
    assert small.pos_embed.shape == (1, 4, 4, 32)


# ----------------------------------------------------------------------------- RevViT
def test_revvit_layer_is_reversible():
    model = RevVisionTransformer(arch=VIT, **IMG).eval()
    layer = model.layers[0]
    x1, x2 = torch.randn(2, 16, 32), torch.randn(2, 16, 32)
    with torch.no_grad():
        y1, y2 = layer(x1, x2)
        back2 = y2 - layer.ffn(layer.ln2(y1))
        back1 = y1 - layer.attn(layer.ln1(back2))
    torch.testing.assert_close(back2, x2)
    torch.testing.assert_close(back1, x1, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- LoRA
def _lora(**kwargs) -> LoRAModel:
    module = dict(type="VisionTransformer", arch=VIT, **IMG)
    return MODELS.build(dict(type="LoRAModel", module=module, alpha=4, rank=2, **kwargs))


def test_lora_trains_only_its_matrices_and_saves_only_them():
    torch.manual_seed(0)
    model = _lora(targets=[dict(type="qkv"), dict(type=r"layers\.1\.attn\.proj", rank=4)])
    model.init_weights()
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == [
        "module.layers.0.attn.qkv.lora_down.weight",
        "module.layers.0.attn.qkv.lora_up.weight",
        "module.layers.1.attn.proj.lora_down.weight",
        "module.layers.1.attn.proj.lora_up.weight",
        "module.layers.1.attn.qkv.lora_down.weight",
        "module.layers.1.attn.qkv.lora_up.weight",
    ]
    assert sorted(model.state_dict()) == trainable
    assert model.module.layers[1].attn.proj.lora_down.weight.shape == (4, 32)
    model(torch.randn(2, 3, 32, 32))[0].sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)
    # a LoRA-only checkpoint loads with nothing reported missing
    result = model.load_state_dict(model.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    # the wrapper answers for the wrapped model's attributes
    assert model.out_type == "cls_token" and model.get_layer_depth("module.x")[1] == 4


def test_lora_starts_at_the_wrapped_model_and_merges_to_the_same_outputs():
    torch.manual_seed(0)
    plain = VisionTransformer(arch=VIT, **IMG).eval()
    model = _lora(targets=[dict(type="qkv")]).eval()
    # a checkpoint of the plain model loads into the wrapped one (qkv.weight -> original_layer)
    result = model.module.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and all("lora_" in k for k in result.missing_keys)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x)[0], plain(x)[0])  # lora_up starts at zero
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_up.weight.normal_()
    adapted = model(x)[0]
    assert (adapted - plain(x)[0]).abs().max() > 1e-3
    merged = model.merged().eval()
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    torch.testing.assert_close(merged(x)[0], adapted, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "cfg, error, words",
    [
        (dict(type="DeiT3", arch="tiny"), ValueError, "arch"),
        (dict(type="BEiTViT", arch=VIT, **IMG, out_indices=5), ValueError, "out_indices"),
        (dict(type="BEiTViT", arch=VIT, **IMG, bias="kv"), ValueError, "bias"),
        (
            dict(type="BEiTViT", arch=VIT, **IMG, use_shared_rel_pos_bias=True),
            ValueError,
            "use_rel_pos_bias",
        ),
        (dict(type="ViTEVA02", arch="huge"), ValueError, "arch"),
        (dict(type="ViTSAM", arch=VIT, **IMG), ValueError, "global_attn_indexes"),
        (dict(type="ViTSAM", arch=SAM, **IMG, out_indices=[2]), ValueError, "out_indices"),
        (dict(type="ViTSAM", arch=SAM, **IMG, out_type="cls_token"), ValueError, "out_type"),
        (
            dict(type="RevVisionTransformer", arch=VIT, **IMG, fusion_mode="mul"),
            ValueError,
            "fusion_mode",
        ),
        (dict(type="RevVisionTransformer", arch="xl"), ValueError, "arch"),
        (dict(type="HiViT", arch=dict(HIVIT, extra=1)), ValueError, "arch"),
        (dict(type="HiViT", arch=HIVIT, out_indices=3), TypeError, "out_indices"),
        (
            dict(type="DistilledVisionTransformer", arch=VIT, with_cls_token=False),
            ValueError,
            "with_cls_token",
        ),
    ],
)
def test_bad_arguments_name_the_argument(cfg, error, words):
    with pytest.raises(error, match=words):
        MODELS.build(cfg)


def test_bad_lora_arguments_name_the_argument():
    with pytest.raises(ValueError, match="targets"):
        _lora(targets=[])
    with pytest.raises(ValueError, match="targets"):
        _lora(targets=[dict(type="no_such_layer")])
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(4, 4), rank=0)
