"""MMPretrain's hierarchical vision transformers (Swin, Swin-V2, Twins PCPVT/SVT, DaViT,
MViTv2) at tiny sizes: shapes of ``out_indices``, a backward pass, freezing, the window
maths against naive (explicit softmax) references, load-time conversions and the
messages of bad arguments. Upstream equality is tests/upstream's business."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from vistra.checkpoint import load_state_dict
from vistra.models.backbones.davit import ChannelAttention
from vistra.models.backbones.mvit import MultiScaleAttention
from vistra.models.backbones.swin_v2 import WindowMSAV2
from vistra.models.backbones.twins import PCPVT, ClsPCPVT
from vistra.models.layers.window_attention import ShiftWindowMSA
from vistra.registry import MODELS, default_scope

SWIN_ARCH = dict(embed_dims=8, depths=[2, 2, 2, 1], num_heads=[1, 2, 2, 4])
TWINS_ARCH = dict(
    embed_dims=[8, 16, 16, 32], depths=[2, 1, 2, 1], num_heads=[1, 2, 2, 4],
    patch_sizes=[4, 2, 2, 2], strides=[4, 2, 2, 2], mlp_ratios=[2, 2, 2, 2],
    sr_ratios=[8, 4, 2, 1],
)  # fmt: skip
# (config, input (H, W), the (C, H, W) of every output)
CASES = {
    "swin": (
        dict(type="SwinTransformer", arch=SWIN_ARCH, window_size=3, pad_small_map=True,
             img_size=48, out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
        (40, 56), [(8, 10, 14), (16, 5, 7), (32, 3, 4), (64, 2, 2)],
    ),
    "swin-v2": (
        dict(type="SwinTransformerV2", arch={**SWIN_ARCH, "extra_norm_every_n_blocks": 2},
             window_size=[4, 3, 2, 2], pad_small_map=True, img_size=48, out_indices=(1, 3)),
        (40, 56), [(16, 5, 7), (64, 2, 2)],
    ),
    "pcpvt": (
        dict(type="PCPVT", arch=TWINS_ARCH, out_indices=(0, 3), qkv_bias=True,
             norm_after_stage=[False, False, False, True]),
        (64, 48), [(8, 16, 12), (32, 2, 2)],
    ),
    "svt": (
        dict(type="SVT", arch={**TWINS_ARCH, "window_sizes": [5, 5, 3, 3]}, out_indices=(1, 3),
             norm_after_stage=True, drop_path_rate=0.1),
        (64, 48), [(16, 8, 6), (32, 2, 2)],
    ),
    "davit": (
        dict(type="DaViT", arch=dict(embed_dims=8, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4]),
             window_size=3, pad_small_map=True, out_indices=(0, 2, 3)),
        (64, 48), [(8, 16, 12), (32, 4, 3), (64, 2, 1)],
    ),
    "mvit": (
        dict(type="MViT", arch=dict(embed_dims=8, num_layers=4, num_heads=1,
             downscale_indices=[1, 2, 3]), img_size=64, out_scales=[0, 1, 3], drop_path_rate=0.1),
        (48, 48), [(8, 12, 12), (16, 6, 6), (64, 2, 2)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_forward_shapes_and_backward(name):
    cfg, (h, w), shapes = CASES[name]
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    outs = model(torch.randn(2, 3, h, w))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape[1:]) for o in outs] == shapes
    sum(o.square().mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["swin", "swin-v2", "davit"])
def test_frozen_stages_freeze_the_embedding_and_stages_up_to_k(name):
    cfg = {**CASES[name][0], "frozen_stages": 1}
    model = MODELS.build(cfg)
    model.train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    for i, stage in enumerate(model.stages):
        frozen = i <= 1  # upstream freezes stages 0..frozen_stages
        assert all(p.requires_grad != frozen for p in stage.parameters()), i
        assert stage.training != frozen
    for i in model.out_indices:
        assert all(p.requires_grad == (i > 1) for p in getattr(model, f"norm{i}").parameters())


# ----------------------------------------------------------------------------- window maths
def _naive_shifted_window_attention(attn: ShiftWindowMSA, x: torch.Tensor, hw) -> torch.Tensor:
    """The shifted-window attention written as one global softmax per image: every
    token may attend only within its window of the rolled, padded map, with the bias of
    its in-window offset and -100 across the wrap-around regions."""
    msa = attn.w_msa
    ws, s = attn.window_size, attn.shift_size
    b, _, c = x.shape
    h, w = hw
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    grid = F.pad(x.view(b, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
    grid = torch.roll(grid, (-s, -s), (1, 2))
    tokens = grid.reshape(b, hp * wp, c)
    heads = msa.num_heads
    q, k, v = msa.qkv(tokens).reshape(b, -1, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    rows = torch.arange(hp).repeat_interleave(wp)
    cols = torch.arange(wp).repeat(hp)
    same_window = ((rows // ws)[:, None] == (rows // ws)[None]) & (
        (cols // ws)[:, None] == (cols // ws)[None]
    )
    dy = (rows % ws)[:, None] - (rows % ws)[None]
    dx = (cols % ws)[:, None] - (cols % ws)[None]
    bias = msa.relative_position_bias_table[(dy + ws - 1) * (2 * ws - 1) + dx + ws - 1]
    logits = (q @ k.transpose(-2, -1)) * msa.scale + bias.permute(2, 0, 1)
    if s > 0:

        def region(i, size):
            return (i >= size - ws).long() + (i >= size - s).long()

        rid = region(rows, hp) * 3 + region(cols, wp)
        logits = logits + (rid[:, None] != rid[None]).float() * -100.0
    logits = logits.masked_fill(~same_window, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, hp, wp, c)
    out = msa.proj(out)
    out = torch.roll(out, (s, s), (1, 2))[:, :h, :w]
    return out.reshape(b, h * w, c)


@pytest.mark.parametrize("shift, hw", [(0, (7, 10)), (1, (7, 10)), (2, (9, 8)), (2, (4, 4))])
def test_shift_window_attention_equals_a_masked_global_softmax(shift, hw):
    torch.manual_seed(0)
    attn = ShiftWindowMSA(8, 2, window_size=4, shift_size=shift, pad_small_map=True).eval()
    torch.nn.init.normal_(attn.w_msa.relative_position_bias_table)
    x = torch.randn(2, hw[0] * hw[1], 8)
    with torch.no_grad():
        torch.testing.assert_close(
            attn(x, hw), _naive_shifted_window_attention(attn, x, hw), atol=1e-5, rtol=1e-5
        )


def test_small_maps_follow_upstreams_rules():
    attn = ShiftWindowMSA(8, 2, window_size=4, shift_size=2).eval()  # pad_small_map=False
    x = torch.randn(1, 16, 8)
    with torch.no_grad():  # one window across: no shift, so plain window attention
        plain = ShiftWindowMSA(8, 2, window_size=4, shift_size=0).eval()
        plain.load_state_dict(attn.state_dict())
        torch.testing.assert_close(attn(x, (4, 4)), plain(x, (4, 4)))
    with pytest.raises(ValueError, match="smaller than window_size=4.*pad_small_map"):
        attn(torch.randn(1, 9, 8), (3, 3))


def test_window_msa_v2_is_scaled_cosine_attention_with_a_squashed_bias():
    torch.manual_seed(0)
    attn = WindowMSAV2(8, (3, 3), 2).eval()
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(4, 9, 8)
    mask = torch.where(torch.rand(2, 9, 9) > 0.7, -100.0, 0.0)
    with torch.no_grad():
        got = attn(x, mask)
        qkv_bias = torch.cat([attn.q_bias, torch.zeros(8), attn.v_bias])
        q, k, v = (
            F.linear(x, attn.qkv.weight, qkv_bias).reshape(4, 9, 3, 2, 4).permute(2, 0, 3, 1, 4)
        )
        cos = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logits = cos * attn.logit_scale.clamp(max=torch.log(torch.tensor(100.0))).exp()
        table = attn.cpb_mlp(attn.relative_coords_table).view(-1, 2)
        bias = table[attn.relative_position_index.view(-1)].view(9, 9, 2).permute(2, 0, 1)
        logits = logits + 16 * torch.sigmoid(bias)
        logits = (logits.view(2, 2, 2, 9, 9) + mask[None, :, None]).view(4, 2, 9, 9)
        ref = attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(4, 9, 8))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_davit_channel_attention_mixes_channels_per_head():
    torch.manual_seed(0)
    attn = ChannelAttention(8, num_heads=2, qkv_bias=True).eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        q, k, v = attn.qkv(x).reshape(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
        weights = ((k * attn.scale).transpose(-1, -2) @ v).softmax(-1)  # (B, heads, d, d)
        ref = attn.proj((weights @ q.transpose(-1, -2)).permute(0, 3, 1, 2).reshape(2, 5, 8))
        torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=1e-5)


def test_mvit_attention_adds_the_decomposed_relative_position_bias():
    torch.manual_seed(0)
    attn = MultiScaleAttention(8, 8, 2, stride_q=2, stride_kv=2, rel_pos_spatial=True,
                               input_size=(6, 6)).eval()  # fmt: skip
    attn.init_weights()
    x = torch.randn(1, 36, 8)
    with torch.no_grad():
        out, size = attn(x, (6, 6))
        assert size == (3, 3) and out.shape == (1, 9, 8)
        # zero relative positions and no residual pooling: plain softmax attention
        attn.rel_pos_h.zero_()
        attn.rel_pos_w.zero_()
        attn.residual_pooling = False
        qkv = attn.qkv(x).reshape(1, 36, 3, 2, 4).permute(2, 0, 3, 1, 4)
        pooled = []
        for t, pool, norm in zip(qkv, (attn.pool_q, attn.pool_k, attn.pool_v),
                                 (attn.norm_q, attn.norm_k, attn.norm_v)):  # fmt: skip
            t = pool(t.reshape(2, 6, 6, 4).permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)
            pooled.append(norm(t).unsqueeze(0))
        q, k, v = pooled
        ref = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1) @ v
        ref = attn.proj(ref.transpose(1, 2).reshape(1, 9, 8))
        torch.testing.assert_close(attn(x, (6, 6))[0], ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- registry, loading
def test_plain_names_are_mmpretrains_and_mmseg_scope_keeps_its_variants():
    assert MODELS.get("PCPVT") is ClsPCPVT
    with default_scope("mmseg"):
        assert MODELS.get("PCPVT") is PCPVT
        assert MODELS.get("SwinTransformer").__name__ == "SegSwinTransformer"
    assert MODELS.get("SwinTransformer").__module__.endswith("backbones.swin")
    keys = MODELS.build(CASES["pcpvt"][0]).state_dict()
    assert "stages.0.0.attn.q.weight" in keys and "stages.0.0.attn.kv.weight" in keys
    assert "norm_after_stage3.weight" in keys and "norm_after_stage0.weight" not in keys


def test_swin_converts_old_checkpoints_and_resizes_bias_tables():
    cfg = dict(type="SwinTransformer", arch=SWIN_ARCH, img_size=48, pad_small_map=True)
    small = MODELS.build({**cfg, "window_size": 3})
    big = MODELS.build({**cfg, "window_size": 4})
    state = OrderedDict(small.state_dict())
    state["norm.weight"] = state.pop("norm3.weight")  # layout version 1
    state["norm.bias"] = state.pop("norm3.bias")
    state["stages.0.blocks.1.attn_mask"] = torch.zeros(1)  # layout version 2
    report = load_state_dict(big, state)
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    assert ("norm.weight", "norm3.weight") in report.remapped
    table = big.stages[0].blocks[0].attn.w_msa.relative_position_bias_table
    assert table.shape == (49, 1)
    torch.testing.assert_close(big.norm3.weight, small.norm3.weight)


def test_swin_v2_takes_its_own_window_buffers_for_another_window():
    cfg = dict(type="SwinTransformerV2", arch={**SWIN_ARCH, "extra_norm_every_n_blocks": 0},
               img_size=48, pad_small_map=True)  # fmt: skip
    small = MODELS.build({**cfg, "window_size": 3})
    big = MODELS.build({**cfg, "window_size": 4})
    report = load_state_dict(big, small.state_dict())
    assert report.missing == [] and report.unexpected == []
    assert [k for k, _, _ in report.mismatched] == []  # the MLP bias has no window shape
    own = MODELS.build({**cfg, "window_size": 4}).stages[0].blocks[0].attn.w_msa
    assert torch.equal(big.stages[0].blocks[0].attn.w_msa.relative_coords_table,
                       own.relative_coords_table)  # fmt: skip


def test_swin_layer_depth_counts_blocks():
    model = MODELS.build(CASES["swin"][0])
    assert model.get_layer_depth("backbone.patch_embed.projection.weight", "backbone.") == (0, 9)
    assert model.get_layer_depth("backbone.stages.1.blocks.1.norm1.weight", "backbone.") == (4, 9)
    assert model.get_layer_depth("backbone.stages.1.downsample.norm.weight", "backbone.") == (4, 9)
    assert model.get_layer_depth("head.fc.weight", "backbone.") == (8, 9)


@pytest.mark.parametrize(
    "cfg, error, pattern",
    [
        (dict(type="SwinTransformer", arch="huge"), ValueError, r"arch='huge'.*valid.*'tiny'"),
        (dict(type="SwinTransformer", out_indices=(4,)), ValueError, r"out_indices=\[4\]"),
        (dict(type="SwinTransformerV2", window_size=[8, 8]), ValueError, r"window_size=\[8, 8\]"),
        (dict(type="SwinTransformerV2", window_size="8"), TypeError, r"window_size"),
        (dict(type="SwinTransformerV2", arch=SWIN_ARCH), ValueError, r"extra_norm_every_n_blocks"),
        (
            dict(type="PCPVT", arch="small", norm_after_stage=[True]),
            ValueError,
            r"norm_after_stage=\[True\]",
        ),
        (dict(type="SVT", arch=TWINS_ARCH), ValueError, r"window_sizes"),
        (dict(type="PCPVT", arch={**TWINS_ARCH, "depths": [1, 1]}), ValueError, r"per stage"),
        (dict(type="DaViT", out_indices="3"), TypeError, r"out_indices"),
        (dict(type="MViT", arch="tiny", out_scales=[4]), ValueError, r"out_scales: 4"),
        (dict(type="MViT", arch="tiny", windw_size=7), Exception, r"windw_size"),
    ],  # fmt: skip
)
def test_bad_arguments_name_the_argument(cfg, error, pattern):
    with pytest.raises(error, match=pattern):
        MODELS.build(cfg)
