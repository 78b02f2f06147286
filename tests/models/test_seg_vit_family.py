"""MMSegmentation's ViT family: MultiLevelNeck + UPerHead on the ViT, SETR (naive / PUP
heads, MLA neck + head), BEiT and MAE (scope ``mmseg``) with Feature2Pyramid, DPT: keys,
maths against naive references, a train step through the segmentor, bad arguments."""

import math

import pytest
import torch
import torch.nn.functional as F

from vistra.data.structures import DataSample, PixelData
from vistra.models.backbones.beit_mmseg import (
    SegBEiT,
    _spline_matrix,
    relative_position_index,
    resize_relative_position_bias_table,
)
from vistra.models.backbones.mae_mmseg import SegMAE
from vistra.models.heads.dpt_head import DPTHead
from vistra.models.heads.setr_mla_head import SETRMLAHead
from vistra.models.heads.setr_up_head import SETRUPHead
from vistra.models.necks.featurepyramid import Feature2Pyramid
from vistra.models.necks.mla_neck import MLANeck
from vistra.models.necks.multilevel_neck import MultiLevelNeck
from vistra.registry import MODELS, default_scope

SIZE = (32, 48)
C = 16  # embedding width of every tiny backbone
VIT = dict(
    type="VisionTransformer", img_size=SIZE, patch_size=8, embed_dims=C, num_layers=4,
    num_heads=2, out_indices=(0, 1, 2, 3),
)  # fmt: skip
BEIT = dict(
    type="BEiT", img_size=SIZE, patch_size=8, embed_dims=C, num_layers=4, num_heads=2,
    out_indices=(0, 1, 2, 3), drop_path_rate=0.1,
)  # fmt: skip
MAE = dict(BEIT, type="MAE", init_values=1.0)
BN = dict(type="BN", requires_grad=True)
FOUR = dict(in_channels=[C] * 4, in_index=[0, 1, 2, 3])


def _head(kind: str, **kwargs) -> dict:
    return dict(type=kind, channels=8, num_classes=3, norm_cfg=BN, **kwargs)


CASES = {
    "vit-mln-upernet": (
        VIT,
        dict(type="MultiLevelNeck", in_channels=[C] * 4, out_channels=C, scales=[4, 2, 1, 0.5]),
        _head("UPerHead", pool_scales=(1, 2), **FOUR),
    ),
    "setr-naive": (
        dict(VIT, norm_cfg=dict(type="LN", eps=1e-6), interpolate_mode="bilinear"),
        None,
        _head("SETRUPHead", in_channels=C, in_index=3, num_convs=1, up_scale=4, kernel_size=1),
    ),
    "setr-pup": (
        VIT,
        None,
        _head("SETRUPHead", in_channels=C, in_index=3, num_convs=2, up_scale=2, kernel_size=3),
    ),
    "setr-mla": (
        VIT,
        dict(
            type="MLANeck",
            in_channels=[C] * 4,
            out_channels=8,
            norm_cfg=BN,
            act_cfg=dict(type="ReLU"),
        ),  # fmt: skip
        dict(_head("SETRMLAHead", mla_channels=4, **FOUR), channels=16, in_channels=[8] * 4),
    ),
    "beit": (
        BEIT,
        dict(type="Feature2Pyramid", embed_dim=C, rescales=[4, 2, 1, 0.5], norm_cfg=BN),
        _head("UPerHead", pool_scales=(1, 2), **FOUR),
    ),
    "mae": (
        MAE,
        dict(type="Feature2Pyramid", embed_dim=C, rescales=[4, 2, 1, 0.5], norm_cfg=BN),
        _head("UPerHead", pool_scales=(1, 2), **FOUR),
    ),
    "dpt": (
        dict(VIT, output_cls_token=True),
        None,
        _head(
            "DPTHead",
            embed_dims=C,
            post_process_channels=[4, 8, 8, 16],
            readout_type="project",
            input_transform="multiple_select",
            in_index=(0, 1, 2, 3),
            in_channels=(C,) * 4,
        ),  # fmt: skip
    ),
}


def _segmentor(backbone: dict, neck: dict | None, head: dict) -> dict:
    cfg = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", size=SIZE),
        backbone=backbone,
        decode_head=head,
        test_cfg=dict(mode="whole"),
    )
    if neck is not None:
        cfg["neck"] = neck
    return cfg


def _args(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k != "type"}


def _samples(n, size, num_classes=3):
    g = torch.Generator().manual_seed(0)
    return [
        DataSample(
            metainfo=dict(ori_shape=size, img_shape=size),
            gt_sem_seg=PixelData(torch.randint(0, num_classes, (1, *size), generator=g)),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("name", list(CASES))
def test_segmentor_forward_shapes_and_train_step(name):
    torch.manual_seed(0)
    with default_scope("mmseg"):
        model = MODELS.build(_segmentor(*CASES[name]))
    model.init_weights()
    x = torch.randn(2, 3, *SIZE)
    losses = model(x, _samples(2, SIZE), mode="loss")
    assert torch.isfinite(losses["decode.loss_ce"])
    losses["decode.loss_ce"].backward()
    first = next(model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        logits = model(x, mode="tensor")
        preds = model(x, mode="predict")
    assert logits.shape[:2] == (2, 3)
    assert preds[0].seg_logits.data.shape == (3, *SIZE)


def test_scoped_beit_and_mae_win_under_mmseg():
    with default_scope("mmseg"):
        assert MODELS.get("BEiT") is SegBEiT and MODELS.get("MAE") is SegMAE
    assert MODELS.get("MAE", scope="mmseg") is SegMAE
    assert MODELS.get("MAE") is not SegMAE  # the self-supervised algorithm stays plain


def test_beit_and_mae_keys_are_mmsegs():
    beit = {k: tuple(v.shape) for k, v in SegBEiT(**_args(BEIT)).state_dict().items()}
    layer = {k[len("layers.0.") :]: v for k, v in beit.items() if k.startswith("layers.0.")}
    wh, ww = SIZE[0] // 8, SIZE[1] // 8
    assert layer["attn.relative_position_bias_table"] == ((2 * wh - 1) * (2 * ww - 1) + 3, 2)
    assert layer["attn.relative_position_index"] == (wh * ww + 1,) * 2
    assert layer["attn.q_bias"] == (C,) and layer["attn.v_bias"] == (C,)
    assert "attn.qkv.bias" not in layer and layer["gamma_1"] == (C,)
    assert {"ln1.weight", "ln2.weight", "ffn.layers.0.0.weight", "ffn.layers.1.weight"} <= set(
        layer
    )
    assert beit["patch_embed.projection.bias"] == (C,) and "pos_embed" not in beit
    mae = SegMAE(**_args(MAE)).state_dict()
    assert mae["pos_embed"].shape == (1, wh * ww + 1, C)
    assert "layers.0.attn.qkv.bias" in mae and "layers.0.attn.q_bias" not in mae


def test_relative_position_index_matches_a_direct_construction():
    wh, ww = 2, 3
    index = relative_position_index((wh, ww))
    num = (2 * wh - 1) * (2 * ww - 1) + 3
    cells = [(i, j) for i in range(wh) for j in range(ww)]
    for a, (ya, xa) in enumerate(cells):
        for b, (yb, xb) in enumerate(cells):
            assert index[a + 1, b + 1] == (ya - yb + wh - 1) * (2 * ww - 1) + (xa - xb + ww - 1)
    assert index[0, 0] == num - 1 and index[0, 1] == num - 3 and index[1, 0] == num - 2


def test_beit_attention_equals_explicit_maths():
    torch.manual_seed(0)
    model = SegBEiT(**_args(BEIT)).eval()
    attn = model.layers[0].attn
    with torch.no_grad():
        for p in (attn.q_bias, attn.v_bias, attn.relative_position_bias_table):
            p.normal_()
    x = torch.randn(2, attn.window_size[0] * attn.window_size[1] + 1, C)
    w = attn.qkv.weight
    q = F.linear(x, w[:C], attn.q_bias)
    k = F.linear(x, w[C : 2 * C])
    v = F.linear(x, w[2 * C :], attn.v_bias)
    heads = [slice(0, C // 2), slice(C // 2, C)]
    bias = attn.relative_position_bias_table[attn.relative_position_index]  # (n, n, heads)
    outs = []
    for h, s in enumerate(heads):
        logits = q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(C // 2) + bias[..., h]
        outs.append(logits.softmax(-1) @ v[..., s])
    with torch.no_grad():
        assert torch.allclose(attn(x), attn.proj(torch.cat(outs, -1)), atol=1e-5)
    with pytest.raises(ValueError, match="img_size"):
        model(torch.randn(1, 3, 16, 16))


def test_not_a_knot_spline_reproduces_cubics_and_the_table_resize_keeps_constants():
    x = torch.tensor([-7.0, -3.5, -1.2, 0.0, 1.2, 3.5, 7.0], dtype=torch.float64)
    xq = torch.linspace(-7, 7, 15, dtype=torch.float64)

    def cubic(t):
        return 0.3 * t**3 - t**2 + 2 * t - 1

    assert torch.allclose(_spline_matrix(x, xq) @ cubic(x), cubic(xq), atol=1e-9)
    # a 3x3 window (5x5 offsets) resized for a 5x5 window (9x9): constants stay constant
    table = torch.full((5 * 5 + 3, 2), 0.7)
    table[-3:] = torch.tensor([1.0, 2.0, 3.0])[:, None]
    new = resize_relative_position_bias_table(table, 9 * 9 + 3, (5, 5))
    assert new.shape == (84, 2)
    assert torch.allclose(new[:-3], torch.full_like(new[:-3], 0.7), atol=1e-6)
    assert torch.equal(new[-3:], table[-3:])
    # loading a 3x3-window BEiT into a 5x5-window one resizes its tables
    small = dict(patch_size=16, embed_dims=C, num_layers=1, num_heads=2)
    src, dst = SegBEiT(img_size=48, **small), SegBEiT(img_size=80, **small)
    dst.load_state_dict(src.state_dict())
    assert dst.layers[0].attn.relative_position_bias_table.shape == (84, 2)
    assert torch.equal(dst.layers[0].attn.relative_position_index, relative_position_index((5, 5)))


def test_necks_and_heads_against_naive_references():
    torch.manual_seed(0)
    feats = [torch.randn(2, C, 4, 6) for _ in range(4)]
    neck = MultiLevelNeck([C] * 4, 8, scales=[4, 2, 1, 0.5]).eval()
    outs = neck(feats)
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    ref = neck.convs[3](F.interpolate(neck.lateral_convs[3](feats[3]), scale_factor=0.5,
                                      mode="bilinear"))  # fmt: skip
    assert torch.allclose(outs[3], ref)
    # MLA: outputs deepest-first, output k sums the k+1 deepest projections
    mla = MLANeck([C] * 4, 8).eval()
    normed = [mla.norm[i](f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for i, f in enumerate(feats)]
    proj = [mla.mla.channel_proj[i](n) for i, n in enumerate(normed)]
    out = mla(feats)
    assert torch.allclose(out[1], mla.mla.feat_extract[1](proj[3] + proj[2]), atol=1e-6)
    pyramid = Feature2Pyramid(C, rescales=[4, 2, 1, 0.5], norm_cfg=BN).eval()
    assert [tuple(o.shape[2:]) for o in pyramid(feats)] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert "upsample_4x.3.weight" in pyramid.state_dict()
    up = SETRUPHead(in_channels=C, channels=8, num_classes=3, num_convs=2, up_scale=2)
    assert up(feats).shape == (2, 3, 16, 24)
    assert "norm.weight" in up.state_dict()


def test_dpt_keys_and_readouts():
    head = DPTHead(
        in_channels=(C,) * 4, channels=8, num_classes=3, embed_dims=C,
        post_process_channels=[4, 8, 8, 16], readout_type="project",
        input_transform="multiple_select", in_index=(0, 1, 2, 3),
    )  # fmt: skip
    keys = head.state_dict()
    assert "fusion_blocks.0.res_conv_unit1.conv1.conv.weight" not in keys
    assert "fusion_blocks.1.res_conv_unit1.conv1.conv.weight" in keys
    assert "fusion_blocks.1.res_conv_unit1.conv1.bn.weight" in keys
    assert "reassemble_blocks.readout_projects.0.0.weight" in keys
    assert "reassemble_blocks.resize_layers.3.weight" in keys
    feats = [[torch.randn(2, C, 4, 6), torch.randn(2, C)] for _ in range(4)]
    assert head.eval()(feats).shape == (2, 3, 32, 48)
    with pytest.raises(ValueError, match="output_cls_token"):
        head([torch.randn(2, C, 4, 6)] * 4)


def test_bad_arguments_name_what_is_valid():
    with pytest.raises(ValueError, match="kernel_size must be 1 or 3"):
        SETRUPHead(in_channels=C, channels=8, num_classes=3, kernel_size=5)
    with pytest.raises(ValueError, match="mla_channels"):
        SETRMLAHead(in_channels=[C] * 4, in_index=[0, 1, 2, 3], channels=10, num_classes=3)
    with pytest.raises(KeyError, match="rescales"):
        Feature2Pyramid(C, rescales=[3, 1])
    with pytest.raises(ValueError, match="readout_type='cls'.*valid"):
        DPTHead(in_channels=(C,) * 4, channels=8, num_classes=3, readout_type="cls",
                input_transform="multiple_select", in_index=(0, 1, 2, 3))  # fmt: skip
    with pytest.raises(ValueError, match="in_channels"):
        MultiLevelNeck([C] * 3, 8, scales=[1, 2])
