"""SegFormer (MiT + SegformerHead), MMSegmentation's Swin (scope ``mmseg``), PatchMerging,
and Twins (PCPVT, SVT): keys, window maths against naive references, a train step."""

import pytest
import torch
import torch.nn.functional as F

from vistra.data.structures import DataSample, PixelData
from vistra.models.backbones.mit import MixVisionTransformer
from vistra.models.backbones.swin_mmseg import (
    SegSwinTransformer,
    ShiftWindowMSA,
    WindowMSA,
    relative_position_index,
)
from vistra.models.backbones.twins import PCPVT, SVT, LocallyGroupedSelfAttention
from vistra.models.layers.patch_merging import PatchMerging
from vistra.registry import MODELS, default_scope

MIT = dict(
    type="MixVisionTransformer", embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 2, 4]
)
SWIN = dict(
    type="SwinTransformer",
    embed_dims=8,
    depths=[2, 2, 1, 1],
    num_heads=[1, 2, 2, 4],
    window_size=3,
    drop_path_rate=0.1,
)
PCPVT_S = dict(
    type="PCPVT",
    embed_dims=[8, 16, 16, 32],
    num_heads=[1, 2, 2, 4],
    mlp_ratios=[2, 2, 2, 2],
    depths=[2, 1, 1, 1],
    qkv_bias=True,
)
SVT_S = dict(
    type="SVT",
    embed_dims=[8, 16, 16, 32],
    num_heads=[1, 2, 2, 4],
    mlp_ratios=[2, 2, 2, 2],
    depths=[2, 2, 1, 1],
    windiow_sizes=[3, 3, 3, 3],
    sr_ratios=[4, 2, 1, 1],
)


def _segmentor(backbone: dict, channels: list[int]) -> dict:
    return dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", size=(40, 56)),
        backbone=backbone,
        decode_head=dict(
            type="SegformerHead",
            in_channels=channels,
            in_index=[0, 1, 2, 3],
            channels=8,
            num_classes=3,
            norm_cfg=dict(type="BN"),
        ),
        test_cfg=dict(mode="whole"),
    )


def _samples(n, size, num_classes=3):
    g = torch.Generator().manual_seed(0)
    return [
        DataSample(
            metainfo=dict(ori_shape=size, img_shape=size),
            gt_sem_seg=PixelData(torch.randint(0, num_classes, (1, *size), generator=g)),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    "backbone, channels",
    [
        (MIT, [8, 16, 16, 32]),
        (SWIN, [8, 16, 32, 64]),
        (PCPVT_S, [8, 16, 16, 32]),
        (SVT_S, [8, 16, 16, 32]),
    ],
    ids=["mit", "swin", "pcpvt", "svt"],
)
def test_segmentor_forward_shapes_and_train_step(backbone, channels):
    torch.manual_seed(0)
    with default_scope("mmseg"):
        model = MODELS.build(_segmentor(backbone, channels))
    model.init_weights()
    x = torch.randn(2, 3, 40, 56)  # not a multiple of the windows: padding paths run
    feats = model.backbone(x)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, -(-40 // s), -(-56 // s)) for c, s in zip(channels, (4, 8, 16, 32))
    ]
    losses = model(x, _samples(2, (40, 56)), mode="loss")
    assert torch.isfinite(losses["decode.loss_ce"])
    losses["decode.loss_ce"].backward()
    first = next(model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        logits = model(x, mode="tensor")
    assert logits.shape == (2, 3, 10, 14)


def test_mit_keys_are_mmsegs():
    backbone = MixVisionTransformer(**{k: v for k, v in MIT.items() if k != "type"})
    keys = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    assert keys["layers.0.0.projection.weight"] == (8, 3, 7, 7)
    assert keys["layers.0.1.0.attn.attn.in_proj_weight"] == (24, 8)
    assert keys["layers.0.1.0.attn.sr.weight"] == (8, 8, 8, 8)  # sr_ratio 8
    assert keys["layers.0.1.0.ffn.layers.1.weight"] == (32, 1, 3, 3)  # depthwise
    assert keys["layers.0.1.0.ffn.layers.4.weight"] == (8, 32, 1, 1)
    assert keys["layers.3.2.weight"] == (32,)
    assert "layers.3.1.0.attn.sr.weight" not in keys  # sr_ratio 1


def test_swin_is_the_mmseg_scoped_variant_with_its_keys():
    with default_scope("mmseg"):
        assert MODELS.get("SwinTransformer") is SegSwinTransformer
    model = SegSwinTransformer(
        embed_dims=8,
        depths=[2, 1],
        num_heads=[1, 2],
        strides=(4, 2),
        out_indices=(1,),
        window_size=3,
    )
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    blk = "stages.0.blocks.1."
    assert keys[blk + "attn.w_msa.relative_position_bias_table"] == (25, 1)
    assert keys[blk + "attn.w_msa.relative_position_index"] == (9, 9)
    assert keys[blk + "attn.w_msa.qkv.weight"] == (24, 8)
    assert keys[blk + "ffn.layers.0.0.weight"] == (32, 8)
    assert keys["stages.0.downsample.norm.weight"] == (32,)
    assert keys["stages.0.downsample.reduction.weight"] == (16, 32)
    assert "norm1.weight" in keys and "norm0.weight" not in keys


def test_relative_position_index_matches_upstreams_construction():
    for wh, ww in [(3, 3), (2, 4)]:
        seq = (torch.arange(0, (2 * ww - 1) * wh, 2 * ww - 1)[:, None] + torch.arange(ww)).view(
            1, -1
        )
        upstream = (seq + seq.T).flip(1)
        assert torch.equal(relative_position_index((wh, ww)), upstream)


def test_window_msa_equals_explicit_softmax_with_mask():
    torch.manual_seed(0)
    attn = WindowMSA(8, 2, (3, 3)).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table)
    x = torch.randn(4, 9, 8)  # 2 images x 2 windows
    mask = torch.where(torch.rand(2, 9, 9) > 0.7, -100.0, 0.0)
    with torch.no_grad():
        got = attn(x, mask)
        q, k, v = attn.qkv(x).reshape(4, 9, 3, 2, 4).permute(2, 0, 3, 1, 4)
        logits = (q * attn.scale) @ k.transpose(-2, -1) + attn.relative_position_bias()[None]
        logits = (logits.view(2, 2, 2, 9, 9) + mask[None, :, None]).view(4, 2, 9, 9)
        ref = attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(4, 9, 8))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_shift_window_attention_is_shift_equivariant_without_the_mask_effect():
    # with window_size 1 and no shift, windowed attention is a per-token linear map
    attn = ShiftWindowMSA(8, 2, window_size=1).eval()
    x = torch.randn(2, 12, 8)
    with torch.no_grad():
        got = attn(x, (3, 4))
        ref = attn.w_msa.proj(attn.w_msa.qkv(x)[..., 16:])  # softmax over one key: v
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="shift_size=3"):
        ShiftWindowMSA(8, 2, window_size=3, shift_size=3)


def test_patch_merging_uses_unfold_channel_order():
    merge = PatchMerging(2, 3, norm_cfg=None)
    x = torch.arange(2 * 4 * 2, dtype=torch.float).view(1, 8, 2)  # (B, H*W, C), 2x4 map
    with torch.no_grad():
        merge.reduction.weight.copy_(torch.eye(3, 8))
    out, hw = merge(x, (2, 4))
    assert hw == (1, 2)
    grid = x.view(1, 2, 4, 2)  # (B, H, W, C)
    # merged index c * 4 + i * 2 + j picks channel c of pixel (i, j) of the 2x2 patch
    expected = torch.stack([grid[0, 0, 0, 0], grid[0, 0, 1, 0], grid[0, 1, 0, 0]])
    torch.testing.assert_close(out[0, 0], expected)
    odd, hw = merge(torch.randn(1, 15, 2), (3, 5))  # corner padding keeps every pixel
    assert hw == (2, 3) and odd.shape == (1, 6, 3)


def _naive_lsa(attn, x, hw):
    """Upstream's LSA computation written out, the all-or-nothing padding mask included."""
    b, n, c = x.shape
    h, w = hw
    ws = attn.window_size
    pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
    x = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
    hp, wp = x.shape[1:3]
    gh, gw = hp // ws, wp // ws
    mask = torch.zeros(1, hp, wp)
    mask[:, -pad_b:, :] = 1
    mask[:, :, -pad_r:] = 1
    x = x.reshape(b, gh, ws, gw, ws, c).transpose(2, 3)
    mask = mask.reshape(1, gh, ws, gw, ws).transpose(2, 3).reshape(1, gh * gw, ws * ws)
    am = mask.unsqueeze(2) - mask.unsqueeze(3)
    am = am.masked_fill(am != 0, -1000.0)
    qkv = attn.qkv(x).reshape(b, gh * gw, ws * ws, 3, attn.num_heads, c // attn.num_heads)
    q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)
    a = ((q @ k.transpose(-2, -1)) * attn.scale + am.unsqueeze(2)).softmax(-1)
    out = (a @ v).transpose(2, 3).reshape(b, gh, gw, ws, ws, c).transpose(2, 3)
    out = out.reshape(b, hp, wp, c)[:, :h, :w].reshape(b, n, c)
    return attn.proj(out)


@pytest.mark.parametrize("hw", [(5, 4), (6, 4), (5, 6), (6, 6)], ids=str)
def test_locally_grouped_attention_matches_upstreams_maths(hw):
    torch.manual_seed(0)
    attn = LocallyGroupedSelfAttention(8, 2, qkv_bias=True, window_size=3).eval()
    x = torch.randn(2, hw[0] * hw[1], 8)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, hw), _naive_lsa(attn, x, hw), atol=1e-5, rtol=1e-5)


def test_twins_keys():
    pcpvt = PCPVT(**{k: v for k, v in PCPVT_S.items() if k != "type"})
    keys = {k: tuple(v.shape) for k, v in pcpvt.state_dict().items()}
    assert keys["position_encodings.0.proj.weight"] == (8, 1, 3, 3)
    assert keys["layers.0.0.attn.attn.in_proj_weight"] == (24, 8)
    assert keys["layers.0.0.attn.sr.weight"] == (8, 8, 8, 8)
    assert not any(k.startswith("norm_list") for k in keys)
    svt = SVT(**{k: v for k, v in SVT_S.items() if k != "type"})
    keys = {k: tuple(v.shape) for k, v in svt.state_dict().items()}
    assert keys["layers.0.0.attn.qkv.weight"] == (24, 8)  # even blocks: LSA
    assert "layers.0.1.attn.attn.in_proj_weight" in keys  # odd blocks: GSA
    assert keys["norm_list.3.weight"] == (32,)


def test_bad_arguments_name_what_is_valid():
    with pytest.raises(ValueError, match="num_stages=4: .*num_heads"):
        MixVisionTransformer(num_heads=[1, 2])
    with pytest.raises(ValueError, match="out_indices"):
        MixVisionTransformer(out_indices=(4,))
    with pytest.raises(ValueError, match="strides\\[0\\]=2 must equal patch_size=4"):
        SegSwinTransformer(strides=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="windiow_sizes"):
        SVT(windiow_sizes=[7])
    with pytest.raises(Exception, match="num_heads"):
        with default_scope("mmseg"):
            MODELS.build(dict(type="SwinTransformer", num_heads=[3]))


def test_swin_loads_backbone_prefixed_keys_and_resizes_bias_tables():
    kwargs = dict(embed_dims=8, depths=[2, 1], num_heads=[1, 2], strides=(4, 2), out_indices=(1,))
    small = SegSwinTransformer(**kwargs, window_size=3)
    big = SegSwinTransformer(**kwargs, window_size=4)
    state = {"backbone." + k: v for k, v in small.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith("relative_position_index")}
    result = big.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert [k for k in result.missing_keys if "relative_position_index" not in k] == []
    table = big.stages[0].blocks[0].attn.w_msa.relative_position_bias_table
    assert table.shape == (49, 1)
