"""VisionTransformer, its layers and head: MMPretrain keys, shapes and behaviour."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.vision_transformer import TransformerEncoderLayer, VisionTransformer
from vistra.models.heads.vit_head import VisionTransformerClsHead
from vistra.models.layers.drop import DropPath
from vistra.models.layers.transformer import (
    FFN,
    MultiheadAttention,
    PatchEmbed,
    build_2d_sincos_position_embedding,
    resize_pos_embed,
)
from vistra.registry import MODELS

TINY = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)


def tiny_vit(**kwargs) -> VisionTransformer:
    """3 layers, width 32, 32x32 input in 8x8 patches: a 4x4 grid."""
    args = dict(arch=TINY, img_size=32, patch_size=8)
    args.update(kwargs)
    return VisionTransformer(**args)


def expected_vit_keys(
    dims: int, layers: int, ffn: int, patch: int, tokens: int
) -> dict[str, tuple[int, ...]]:
    """MMPretrain ViT state-dict keys and shapes, written out from its module structure
    (PatchEmbed.projection, TransformerEncoderLayer ln1/attn/ln2/ffn, final norm ln1)."""
    keys: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, dims),
        "pos_embed": (1, tokens, dims),
        "patch_embed.projection.weight": (dims, 3, patch, patch),
        "patch_embed.projection.bias": (dims,),
    }
    for i in range(layers):
        p = f"layers.{i}."
        keys.update(
            {
                p + "ln1.weight": (dims,),
                p + "ln1.bias": (dims,),
                p + "attn.qkv.weight": (3 * dims, dims),
                p + "attn.qkv.bias": (3 * dims,),
                p + "attn.proj.weight": (dims, dims),
                p + "attn.proj.bias": (dims,),
                p + "ln2.weight": (dims,),
                p + "ln2.bias": (dims,),
                p + "ffn.layers.0.0.weight": (ffn, dims),
                p + "ffn.layers.0.0.bias": (ffn,),
                p + "ffn.layers.1.weight": (dims, ffn),
                p + "ffn.layers.1.bias": (dims,),
            }
        )
    keys["ln1.weight"] = (dims,)
    keys["ln1.bias"] = (dims,)
    return keys


# ---------------------------------------------------------------------- keys and sizes
def test_vit_base_16_keys_shapes_and_parameter_count():
    with torch.device("meta"):  # no memory for 86M parameters
        model = VisionTransformer(arch="b", img_size=224, patch_size=16)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected_vit_keys(768, 12, 3072, 16, 197)
    # 590,592 patch embed + 768 cls + 151,296 pos + 12 * 7,087,872 layers + 1,536 final LN
    assert sum(p.numel() for p in model.parameters()) == 85_798_656


@pytest.mark.parametrize(
    "arch, dims, layers, heads, ffn",
    [
        ("deit-tiny", 192, 12, 3, 768),
        ("deit-s", 384, 12, 6, 1536),
        ("small", 768, 8, 8, 2304),
        ("L", 1024, 24, 16, 4096),
        ("huge", 1280, 32, 16, 5120),
        ("eva-g", 1408, 40, 16, 6144),
    ],
)
def test_arch_zoo_settings(arch, dims, layers, heads, ffn):
    with torch.device("meta"):
        model = VisionTransformer(arch=arch)
    assert (model.embed_dims, model.num_layers) == (dims, layers)
    assert model.layers[0].attn.num_heads == heads
    assert model.layers[0].ffn.layers[0][0].out_features == ffn


def test_strict_load_of_a_checkpoint_with_mmpretrain_keys():
    state = {k: torch.randn(s) for k, s in expected_vit_keys(32, 3, 64, 8, 17).items()}
    model = tiny_vit()
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.layers[2].ffn.layers[1].weight, state["layers.2.ffn.layers.1.weight"])


def test_unknown_arch_names_the_closest_choice():
    with pytest.raises(ValueError, match="deit-tiny"):
        VisionTransformer(arch="deit-tiyn")
    with pytest.raises(ValueError, match="num_heads"):
        VisionTransformer(arch=dict(embed_dims=8, num_layers=1, feedforward_channels=8))


def test_layer_scale_pre_norm_and_avg_featmap_keys():
    model = tiny_vit(layer_scale_init_value=0.1, pre_norm=True, out_type="avg_featmap")
    state = model.state_dict()
    assert torch.allclose(state["layers.0.attn.gamma1.weight"], torch.full((32,), 0.1))
    assert torch.allclose(state["layers.0.ffn.gamma2.weight"], torch.full((32,), 0.1))
    assert "pre_norm.weight" in state and "ln2.weight" in state
    assert "patch_embed.projection.bias" not in state  # CLIP-style: no patch bias


def test_layer_cfgs_override_per_layer():
    model = tiny_vit(layer_cfgs=[dict(), dict(), dict(qkv_bias=False)])
    state = model.state_dict()
    assert "layers.1.attn.qkv.bias" in state and "layers.2.attn.qkv.bias" not in state
    with pytest.raises(ValueError, match="layer_cfgs"):
        tiny_vit(layer_cfgs=[dict()])


def test_built_from_the_registry_with_an_mmpretrain_config():
    model = MODELS.build(
        dict(type="mmpretrain.VisionTransformer", arch="deit-tiny", img_size=32, patch_size=16)
    )
    assert isinstance(model, VisionTransformer) and model.patch_resolution == (2, 2)


# ---------------------------------------------------------------------- forward
@pytest.mark.parametrize(
    "out_type, shape",
    [
        ("cls_token", (2, 32)),
        ("featmap", (2, 32, 4, 4)),
        ("avg_featmap", (2, 32)),
        ("raw", (2, 17, 32)),
    ],
)
def test_out_type_shapes(out_type, shape):
    outs = tiny_vit(out_type=out_type)(torch.randn(2, 3, 32, 32))
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0].shape == shape


def test_outputs_relate_as_documented():
    torch.manual_seed(0)
    raw_model = tiny_vit(out_type="raw").eval()
    x = torch.randn(2, 3, 32, 32)
    raw = raw_model(x)[0]
    featmap_model = tiny_vit(out_type="featmap").eval()
    featmap_model.load_state_dict(raw_model.state_dict())
    featmap = featmap_model(x)[0]
    cls_model = tiny_vit(out_type="cls_token").eval()
    cls_model.load_state_dict(raw_model.state_dict())
    assert torch.allclose(cls_model(x)[0], raw[:, 0])
    # featmap[b, :, i, j] is patch token i * w + j (row-major grid)
    assert torch.allclose(featmap[:, :, 1, 2], raw[:, 1 + 1 * 4 + 2])


def test_without_cls_token():
    model = tiny_vit(with_cls_token=False, out_type="raw")
    assert model.cls_token is None and model.pos_embed.shape == (1, 16, 32)
    assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, 16, 32)
    with pytest.raises(ValueError, match="with_cls_token"):
        tiny_vit(with_cls_token=False, out_type="cls_token")
    with pytest.raises(ValueError, match="out_type"):
        tiny_vit(out_type="tokens")


def test_out_indices_and_final_norm():
    model = tiny_vit(out_indices=(0, -1), out_type="raw").eval()
    x = torch.randn(1, 3, 32, 32)
    first, last = model(x)
    tokens, _ = model.patch_embed(x)
    tokens = torch.cat((model.cls_token, tokens), dim=1) + model.pos_embed
    assert torch.allclose(first, model.layers[0](tokens), atol=1e-6)  # no final norm here
    assert torch.allclose(last.mean(-1), torch.zeros(1, 17), atol=1e-5)  # ln1 normalised it
    with pytest.raises(ValueError, match="out_indices"):
        tiny_vit(out_indices=3)


def test_reference_numbers_match_timm_vit():
    """Same architecture as timm's ViT: copy timm weights over (the key map MMPretrain's
    converter uses) and compare the final tokens."""
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    torch.manual_seed(0)
    ref = TimmViT(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, mlp_ratio=2.0)
    ref.eval()
    renames = [
        ("patch_embed.proj.", "patch_embed.projection."),
        ("blocks.", "layers."),
        (".norm1.", ".ln1."),
        (".norm2.", ".ln2."),
        (".mlp.fc1.", ".ffn.layers.0.0."),
        (".mlp.fc2.", ".ffn.layers.1."),
    ]
    state = {}
    for key, value in ref.state_dict().items():
        if key.startswith("head."):
            continue
        key = "ln1." + key[len("norm.") :] if key.startswith("norm.") else key
        for old, new in renames:
            key = key.replace(old, new)
        state[key] = value
    model = tiny_vit(out_type="raw").eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x)[0], ref.forward_features(x), atol=1e-5)


# ---------------------------------------------------------------------- position embedding
def test_resize_pos_embed_nearest_keeps_row_major_order_and_extra_tokens():
    grid = torch.arange(4.0).reshape(1, 4, 1)  # 2x2 grid, tokens 0..3 row-major
    pos = torch.cat([torch.tensor([[[-1.0]]]), grid], dim=1)
    out = resize_pos_embed(pos, (2, 2), (4, 4), mode="nearest", num_extra_tokens=1)
    assert out.shape == (1, 17, 1) and out[0, 0, 0] == -1
    expected = torch.tensor(
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]], dtype=torch.float
    )
    assert torch.equal(out[0, 1:, 0].reshape(4, 4), expected)
    assert resize_pos_embed(pos, (2, 2), (2, 2)) is pos
    with pytest.raises(ValueError, match="tokens"):
        resize_pos_embed(pos, (3, 3), (4, 4))


def test_forward_at_another_input_size_interpolates_pos_embed_bicubic():
    torch.manual_seed(0)
    small = tiny_vit(out_type="featmap").eval()
    nn.init.normal_(small.pos_embed)
    x = torch.randn(1, 3, 48, 48)
    out = small(x)[0]
    assert out.shape == (1, 32, 6, 6)
    # the same as a model built for 48x48 whose pos_embed is the bicubic resize
    big = tiny_vit(out_type="featmap", img_size=48).eval()
    state = small.state_dict()
    state["pos_embed"] = reference_bicubic_resize(small.pos_embed.detach(), 4, 6)
    big.load_state_dict(state)
    assert torch.allclose(out, big(x)[0], atol=1e-5)


def reference_bicubic_resize(pos: torch.Tensor, src: int, dst: int) -> torch.Tensor:
    """Reference resize written independently of resize_pos_embed."""
    cls, grid = pos[:, :1], pos[:, 1:]
    grid = grid.reshape(1, src, src, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)


def test_loading_a_checkpoint_trained_on_another_grid_resizes_pos_embed():
    torch.manual_seed(0)
    source = tiny_vit()
    nn.init.normal_(source.pos_embed)
    target = tiny_vit(img_size=48)
    target.load_state_dict(source.state_dict(), strict=True)
    expected = reference_bicubic_resize(source.pos_embed.detach(), 4, 6)
    assert torch.allclose(target.pos_embed.detach(), expected, atol=1e-6)


def test_loading_drops_the_cls_row_for_a_model_without_cls_token():
    source = tiny_vit()
    nn.init.normal_(source.pos_embed)
    state = {k: v for k, v in source.state_dict().items() if k != "cls_token"}
    target = tiny_vit(with_cls_token=False, out_type="featmap")
    target.load_state_dict(state, strict=True)
    assert torch.equal(target.pos_embed.detach(), source.pos_embed.detach()[:, 1:])


def test_loading_a_non_square_pos_embed_is_refused_with_the_key_name():
    state = tiny_vit().state_dict()
    state["pos_embed"] = torch.zeros(1, 1 + 12, 32)
    with pytest.raises(ValueError, match="pos_embed"):
        tiny_vit().load_state_dict(state)


def test_sincos_position_embedding_values():
    pos = build_2d_sincos_position_embedding((2, 3), 8, cls_token=True)
    assert pos.shape == (1, 1 + 6, 8)
    assert torch.equal(pos[0, 0], torch.zeros(8))
    # token m = i_w * h + i_h; channel 0 is sin(i_w * 1), channel 4 is sin(i_h * 1),
    # channel 1 is sin(i_w / 100) (second frequency, temperature 1e4 over 2 channels)
    for i_w in range(3):
        for i_h in range(2):
            token = pos[0, 1 + i_w * 2 + i_h]
            assert token[0] == pytest.approx(math.sin(i_w))
            assert token[2] == pytest.approx(math.cos(i_w))
            assert token[4] == pytest.approx(math.sin(i_h))
            assert token[1] == pytest.approx(math.sin(i_w / 100))
    with pytest.raises(ValueError, match="divisible by 4"):
        build_2d_sincos_position_embedding(2, 6)


# ---------------------------------------------------------------------- training behaviour
def test_frozen_stages_freeze_embeddings_and_first_layers_and_stay_in_eval():
    model = tiny_vit(frozen_stages=2, drop_rate=0.1)
    model.train()
    for param in (model.cls_token, model.pos_embed, *model.patch_embed.parameters()):
        assert not param.requires_grad
    for layer in model.layers[:2]:
        assert not layer.training
        assert not any(p.requires_grad for p in layer.parameters())
    assert model.layers[2].training and all(p.requires_grad for p in model.layers[2].parameters())
    assert all(p.requires_grad for p in model.ln1.parameters())
    fully = tiny_vit(frozen_stages=3)
    assert not any(p.requires_grad for p in fully.ln1.parameters())
    pooled = tiny_vit(frozen_stages=3, out_type="avg_featmap")  # a linear probe's backbone
    pooled.train()
    assert not any(p.requires_grad for p in pooled.parameters())
    assert not pooled.ln2.training


def test_drop_path_rates_rise_linearly_and_act_only_in_training():
    model = tiny_vit(drop_path_rate=0.2)
    rates = [(layer.attn.out_drop, layer.ffn.dropout_layer) for layer in model.layers]
    assert all(isinstance(m, DropPath) for pair in rates for m in pair)
    assert [attn.drop_prob for attn, _ in rates] == pytest.approx([0.0, 0.1, 0.2])
    assert [ffn.drop_prob for _, ffn in rates] == pytest.approx([0.0, 0.1, 0.2])
    heavy = tiny_vit(drop_path_rate=0.9)
    x = torch.randn(4, 3, 32, 32)
    heavy.train()
    torch.manual_seed(0)
    a = heavy(x)[0]
    b = heavy(x)[0]
    assert not torch.allclose(a, b)
    heavy.eval()
    assert torch.equal(heavy(x)[0], heavy(x)[0])


def test_init_weights():
    torch.manual_seed(0)
    model = tiny_vit(arch=dict(TINY, embed_dims=64), img_size=64)
    model.init_weights()
    std = model.pos_embed.detach().std().item()
    assert 0.015 < std < 0.025  # trunc_normal std .02 (cut at +-2 absolute, as MMEngine)
    fc = model.layers[1].ffn.layers[0][0]
    assert 0 < fc.bias.abs().max() < 1e-4  # N(0, 1e-6) biases, as MMPretrain
    bound = math.sqrt(6 / (fc.in_features + fc.out_features))
    assert fc.weight.abs().max() <= bound  # Xavier uniform


def test_init_weights_keeps_pos_embed_when_pretrained(tmp_path):
    source = tiny_vit()
    nn.init.normal_(source.pos_embed)
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    model = tiny_vit(init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.pos_embed.detach(), source.pos_embed.detach())


def test_layer_depth_for_layer_wise_lr_decay():
    model = tiny_vit()
    assert model.get_layer_depth("backbone.pos_embed", "backbone.") == (0, 5)
    assert model.get_layer_depth("backbone.layers.2.attn.qkv.weight", "backbone.") == (3, 5)
    assert model.get_layer_depth("backbone.ln1.weight", "backbone.") == (4, 5)
    assert model.get_layer_depth("head.layers.head.weight", "backbone.") == (4, 5)


# ---------------------------------------------------------------------- layers
def test_multihead_attention_matches_the_written_out_formula():
    torch.manual_seed(0)
    attn = MultiheadAttention(embed_dims=8, num_heads=2, qk_scale=0.3).eval()
    x = torch.randn(2, 5, 8)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) * 0.3).softmax(dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 8))
    assert torch.allclose(attn(x), expected, atol=1e-6)
    assert set(attn.state_dict()) == {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}
    with pytest.raises(ValueError, match="divisible"):
        MultiheadAttention(embed_dims=10, num_heads=3)


def test_ffn_keys_and_identity():
    ffn = FFN(embed_dims=4, feedforward_channels=6, num_fcs=3, act_cfg=dict(type="GELU"))
    assert set(ffn.state_dict()) == {
        "layers.0.0.weight",
        "layers.0.0.bias",
        "layers.1.0.weight",
        "layers.1.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    }
    x, identity = torch.randn(2, 4), torch.randn(2, 4)
    assert torch.allclose(ffn(x, identity=identity) - identity, ffn.layers(x))
    no_id = FFN(embed_dims=4, feedforward_channels=6, add_identity=False)
    assert torch.allclose(no_id(x), no_id.layers(x))
    with pytest.raises(ValueError, match="num_fcs"):
        FFN(num_fcs=1)


def test_patch_embed_corner_padding_and_grid():
    embed = PatchEmbed(in_channels=3, embed_dims=8, kernel_size=4, stride=4, input_size=10)
    assert embed.init_out_size == (3, 3)  # 10 padded to 12 at the bottom/right
    tokens, hw = embed(torch.randn(1, 3, 10, 9))
    assert hw == (3, 3) and tokens.shape == (1, 9, 8)
    assert set(embed.state_dict()) == {"projection.weight", "projection.bias"}
    normed = PatchEmbed(embed_dims=8, kernel_size=4, stride=4, norm_cfg=dict(type="LN"))
    assert {"norm.weight", "norm.bias"} <= set(normed.state_dict())
    tokens, _ = normed(torch.randn(1, 3, 8, 8))
    assert torch.allclose(tokens.mean(-1), torch.zeros(1, 4), atol=1e-5)


def test_encoder_layer_keys_are_reusable():
    layer = TransformerEncoderLayer(embed_dims=8, num_heads=2, feedforward_channels=16)
    assert {k.split(".")[0] for k in layer.state_dict()} == {"ln1", "attn", "ln2", "ffn"}
    swiglu = TransformerEncoderLayer(8, 2, 24, ffn_type="swiglu_fused")
    assert swiglu.ffn.w12.weight.shape == (32, 8)  # (24 * 2/3 rounded up to 8) * 2
    with pytest.raises(ValueError, match="ffn_type"):
        TransformerEncoderLayer(8, 2, 16, ffn_type="mlp")


# ---------------------------------------------------------------------- head
def test_head_keys_zero_init_and_logits():
    head = VisionTransformerClsHead(num_classes=5, in_channels=32)
    assert set(head.state_dict()) == {"layers.head.weight", "layers.head.bias"}
    head.init_weights()
    assert head.layers.head.weight.abs().sum() == 0
    feats = (torch.randn(2, 32),)
    assert head(feats).shape == (2, 5)
    untouched = VisionTransformerClsHead(num_classes=5, in_channels=32, init_cfg=None)
    untouched.init_weights()
    assert untouched.layers.head.weight.abs().sum() > 0  # init_cfg=None: torch's default init
    old_style = ([torch.randn(2, 32, 4, 4), feats[0]],)  # MMPretrain 0.x [patch, cls] output
    assert torch.equal(head.pre_logits(old_style), feats[0])


def test_head_with_hidden_layer():
    torch.manual_seed(0)
    head = VisionTransformerClsHead(num_classes=5, in_channels=32, hidden_dim=16)
    assert set(head.state_dict()) == {
        "layers.pre_logits.weight",
        "layers.pre_logits.bias",
        "layers.head.weight",
        "layers.head.bias",
    }
    head.init_weights()
    assert head.layers.pre_logits.weight.abs().sum() > 0  # LeCun normal, not zero
    assert head.layers.pre_logits.bias.abs().sum() == 0
    feats = (torch.randn(3, 32),)
    expected = torch.tanh(head.layers.pre_logits(feats[0]))
    assert torch.allclose(head.pre_logits(feats), expected)
    with pytest.raises(ValueError, match="num_classes"):
        VisionTransformerClsHead(num_classes=0, in_channels=32)


def test_head_loss_and_predict_through_cls_head():
    from vistra.data.structures import DataSample

    head = VisionTransformerClsHead(num_classes=3, in_channels=8)
    head.init_weights()
    samples = [DataSample().set_gt_label(1), DataSample().set_gt_label(2)]
    feats = (torch.randn(2, 8),)
    losses = head.loss(feats, samples)
    assert losses["loss"].item() == pytest.approx(math.log(3), abs=1e-5)  # zero weights
    preds = head.predict(feats, samples)
    assert torch.allclose(preds[0].pred_score, torch.full((3,), 1 / 3))
