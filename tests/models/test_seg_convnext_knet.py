"""ConvNeXt (MMPretrain's, with LN2d and GRN), PoolFormer, SegNeXt (MSCAN + LightHamHead)
and K-Net (IterativeDecodeHead). Tiny widths and inputs: built through the registry as
their MMSegmentation configs build them, forward shapes, one training step, the key
layout details, bad arguments."""

import pytest
import torch

from vistra.data.structures import DataSample, PixelData
from vistra.models.layers.grn import GRN
from vistra.models.layers.norm import LayerNorm2d, build_norm_layer
from vistra.registry import MODELS, RegistryError, default_scope

BN = dict(type="BN", requires_grad=True)
NUM_CLASSES = 4
SIZE = (32, 48)
WIDTHS = [8, 16, 32, 64]


def _fcn(in_channels, in_index, channels=8, **kw):
    return dict(type="FCNHead", in_channels=in_channels, in_index=in_index, channels=channels,
                num_classes=NUM_CLASSES, norm_cfg=BN, **{"num_convs": 1, "concat_input": False,
                                                        **kw})  # fmt: skip


def _segmentor(backbone, decode_head, auxiliary_head=None, neck=None):
    cfg = dict(type="EncoderDecoder", data_preprocessor=dict(type="SegDataPreProcessor"),
               backbone=backbone, decode_head=decode_head, train_cfg=dict(),
               test_cfg=dict(mode="whole"))  # fmt: skip
    if auxiliary_head is not None:
        cfg["auxiliary_head"] = auxiliary_head
    if neck is not None:
        cfg["neck"] = neck
    return cfg


CONVNEXT = dict(type="mmpretrain.ConvNeXt", arch=dict(depths=[1, 1, 2, 1], channels=WIDTHS),
                out_indices=[0, 1, 2, 3], drop_path_rate=0.1, layer_scale_init_value=1.0,
                gap_before_final_norm=False)  # fmt: skip
KNET_STAGE = dict(
    type="KernelUpdateHead", num_classes=NUM_CLASSES, num_ffn_fcs=2, num_heads=2, num_mask_fcs=1,
    feedforward_channels=32, in_channels=16, out_channels=16, dropout=0.0, conv_kernel_size=1,
    ffn_act_cfg=dict(type="ReLU", inplace=True), with_ffn=True,
    feat_transform_cfg=dict(conv_cfg=dict(type="Conv2d"), act_cfg=None),
    # half the head's width: each kernel is updated as two pieces, as in the shipped configs
    kernel_updator_cfg=dict(type="KernelUpdator", in_channels=8, feat_channels=8, out_channels=8,
                            act_cfg=dict(type="ReLU", inplace=True), norm_cfg=dict(type="LN")),
)  # fmt: skip
RESNET = dict(type="ResNetV1c", depth=18, stem_channels=8, base_channels=8, num_stages=4,
              out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1),
              norm_cfg=BN, norm_eval=False, style="pytorch", contract_dilation=True)  # fmt: skip

MODELS_CFG = {
    "convnext-upernet": _segmentor(
        CONVNEXT,
        dict(
            type="UPerHead",
            in_channels=WIDTHS,
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2),
            channels=8,
            num_classes=NUM_CLASSES,
            norm_cfg=BN,
        ),  # fmt: skip
        _fcn(32, 2),
    ),
    "poolformer-fpn": _segmentor(
        dict(
            type="mmpretrain.PoolFormer",
            arch=dict(layers=[1, 1, 2, 1], embed_dims=WIDTHS),
            out_indices=(0, 2, 4, 6),
            drop_path_rate=0.1,
        ),  # fmt: skip
        dict(
            type="FPNHead",
            in_channels=[8] * 4,
            in_index=[0, 1, 2, 3],
            feature_strides=[4, 8, 16, 32],
            channels=8,
            num_classes=NUM_CLASSES,
            norm_cfg=BN,
        ),  # fmt: skip
        neck=dict(type="FPN", in_channels=WIDTHS, out_channels=8, num_outs=4),
    ),
    "segnext": _segmentor(
        dict(
            type="MSCAN",
            embed_dims=WIDTHS,
            mlp_ratios=[2, 2, 2, 2],
            depths=[1, 1, 2, 1],
            drop_path_rate=0.1,
            norm_cfg=BN,
        ),  # fmt: skip
        dict(
            type="LightHamHead",
            in_channels=[16, 32, 64],
            in_index=[1, 2, 3],
            channels=16,
            ham_channels=16,
            num_classes=NUM_CLASSES,
            norm_cfg=dict(type="GN", num_groups=4, requires_grad=True),
            ham_kwargs=dict(MD_S=1, MD_R=4, train_steps=2, eval_steps=3, inv_t=100, rand_init=True),
        ),  # fmt: skip
    ),
    "knet": _segmentor(
        RESNET,
        dict(
            type="IterativeDecodeHead",
            num_stages=2,
            kernel_update_head=[KNET_STAGE] * 2,
            kernel_generate_head=_fcn(64, 3, channels=16, num_convs=2, concat_input=True),
        ),  # fmt: skip
        _fcn(32, 2),
    ),
}


def _samples(n, size=SIZE, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        DataSample(
            metainfo=dict(ori_shape=size, img_shape=size, pad_shape=size),
            gt_sem_seg=PixelData(torch.randint(0, NUM_CLASSES, (1, *size), generator=g)),
        )
        for _ in range(n)
    ]


def _build(cfg):
    with default_scope("mmseg"):
        return MODELS.build(cfg)


@pytest.mark.parametrize("name", sorted(MODELS_CFG))
def test_forward_predict_and_train_step(name):
    torch.manual_seed(0)
    model = _build(MODELS_CFG[name])
    model.init_weights()
    x = torch.randn(2, 3, *SIZE)
    model.train()
    losses = model(x, _samples(2), mode="loss")
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        logits = model(x, mode="tensor")
        preds = model(x, _samples(2), mode="predict")
    assert logits.shape[:2] == (2, NUM_CLASSES)
    assert preds[0].seg_logits.data.shape == (NUM_CLASSES, *SIZE)


def test_mmpretrain_prefix_resolves_to_the_plain_entries_under_mmseg_scope():
    with default_scope("mmseg"):
        assert MODELS.get("mmpretrain.ConvNeXt") is MODELS.get("ConvNeXt")
        assert MODELS.get("mmpretrain.PoolFormer") is MODELS.get("PoolFormer")


def test_convnext_classification_layout_and_v2():
    net = MODELS.build(dict(type="ConvNeXt", arch="atto")).eval()
    out = net(torch.randn(1, 3, 32, 32))
    assert len(out) == 1 and out[0].shape == (1, 320)  # pooled, then norm3
    keys = net.state_dict()
    assert {"downsample_layers.0.0.weight", "downsample_layers.1.0.weight", "norm3.weight",
            "stages.0.0.gamma", "stages.0.0.pointwise_conv1.weight"} <= set(keys)  # fmt: skip
    assert keys["stages.0.0.pointwise_conv1.weight"].shape == (160, 40)  # nn.Linear
    v2 = MODELS.build(dict(type="ConvNeXt", arch=dict(depths=[1] * 4, channels=WIDTHS),
                           use_grn=True, layer_scale_init_value=0.0, linear_pw_conv=False))  # fmt: skip
    keys = v2.state_dict()
    assert "stages.0.0.grn.gamma" in keys and "stages.0.0.gamma" not in keys
    assert keys["stages.0.0.pointwise_conv1.weight"].shape == (32, 8, 1, 1)  # 1x1 conv
    assert v2.eval()(torch.randn(1, 3, 32, 32))[0].shape == (1, 64)


def test_convnext_frozen_stages_and_layer_depth():
    net = MODELS.build(dict(type="ConvNeXt", arch="atto", frozen_stages=1)).train()
    assert not any(p.requires_grad for p in net.stages[0].parameters())
    assert not net.stages[0].training and net.stages[1].training
    assert all(p.requires_grad for p in net.stages[1].parameters())
    assert net.get_layer_depth("backbone.stages.2.4.gamma", "backbone.") == (4, 8)
    assert net.get_layer_depth("head.fc.weight", "backbone.") == (7, 8)


def test_poolformer_keys_out_indices_and_frozen_stem():
    net = MODELS.build(dict(type="PoolFormer", arch="s12"))
    keys = net.state_dict()
    assert "norm6.weight" in keys and "norm0.weight" not in keys  # out_indices=-1: the last
    assert {"patch_embed.proj.weight", "network.1.proj.weight", "network.0.0.layer_scale_1",
            "network.6.1.mlp.fc2.weight"} <= set(keys)  # fmt: skip
    # MMPretrain freezes the stem at the default frozen_stages=0
    assert not any(p.requires_grad for p in net.patch_embed.parameters())
    out = net.eval()(torch.randn(1, 3, 64, 64))
    assert out[0].shape == (1, 512, 2, 2)


def test_ln2d_and_grn_agree_in_both_layouts():
    x = torch.randn(2, 8, 5, 6)
    name, ln = build_norm_layer(dict(type="LN2d", eps=1e-6), 8)
    assert name == "ln" and isinstance(ln, LayerNorm2d)
    with torch.no_grad():
        ln.weight.normal_()
    last = ln(x.permute(0, 2, 3, 1), data_format="channel_last").permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), last)
    grn = GRN(8)
    with torch.no_grad():
        grn.gamma.normal_()
        grn.beta.normal_()
    last = grn(x.permute(0, 2, 3, 1), data_format="channel_last").permute(0, 3, 1, 2)
    torch.testing.assert_close(grn(x), last)


def test_ham_head_bases_follow_the_torch_seed():
    head = _build(MODELS_CFG["segnext"]["decode_head"]).eval()
    feats = [torch.randn(1, c, 4, 6).abs() for c in WIDTHS]
    with torch.no_grad():
        torch.manual_seed(3)
        a = head(feats)
        torch.manual_seed(3)
        b = head(feats)
        c = head(feats)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert "hamburger.ham_out.gn.weight" in head.state_dict()
    fixed = _build({**MODELS_CFG["segnext"]["decode_head"], "ham_kwargs": dict(rand_init=False)})
    with torch.no_grad():
        fixed.eval()(feats)
    assert fixed.state_dict()["hamburger.ham.bases"].shape == (1, 16, 64)


def test_knet_losses_per_stage_and_update_heads_keep_default_init():
    model = _build(MODELS_CFG["knet"])
    before = model.decode_head.kernel_update_head[0].fc_mask.weight.clone()
    model.init_weights()
    # as MMSegmentation: the update heads sit in a plain ModuleList, never initialised
    assert torch.equal(before, model.decode_head.kernel_update_head[0].fc_mask.weight)
    losses = model.train()(torch.randn(2, 3, *SIZE), _samples(2), mode="loss")
    expected = {f"decode.{k}.s{i}" for k in ("loss_ce", "acc_seg") for i in range(3)}
    assert expected <= set(losses)
    keys = model.state_dict()
    assert {"decode_head.kernel_generate_head.conv_seg.weight",
            "decode_head.kernel_update_head.1.attention.attn.in_proj_weight",
            "decode_head.kernel_update_head.0.kernel_update_conv.fc_norm.weight",
            "decode_head.kernel_update_head.0.feat_transform.conv.bias",
            "decode_head.kernel_update_head.0.ffn.layers.0.0.weight",
            "decode_head.kernel_update_head.0.mask_fcs.1.weight"} <= set(keys)  # fmt: skip
    assert not any(k.startswith("decode_head.conv_seg") for k in keys)


@pytest.mark.parametrize(
    ("cfg", "error", "match"),
    [
        (dict(type="ConvNeXt", arch="tinyy"), ValueError, "tiny"),
        (dict(type="ConvNeXt", arch=dict(depths=[1, 1])), ValueError, "channels"),
        (dict(type="PoolFormer", arch="s13"), ValueError, "s12"),
        (dict(type="MSCAN", embed_dims=[8, 16], depths=[1, 1, 1, 1]), ValueError, "embed_dims"),
        (dict(MODELS_CFG["segnext"]["decode_head"], ham_kwargs=dict(MD_Q=2)), TypeError, "MD_R"),
        (dict(MODELS_CFG["knet"]["decode_head"], num_stages=3), ValueError, "num_stages=3"),
    ],
)
def test_bad_arguments(cfg, error, match):
    with pytest.raises((error, RegistryError), match=match):
        _build(cfg)
