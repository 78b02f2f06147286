"""Real-time segmentation networks II: CGNet, ERFNet, Fast-SCNN (with
DepthwiseSeparableFCNHead), MMSegmentation's MobileNetV2 and MobileNetV3 (with
LRASPPHead), PIDNet (with PIDHead, OhemCrossEntropy, BoundaryLoss), their shared layers
(InvertedResidual(V3), SELayer, make_divisible, Conv2dAdaptivePadding) and the
GenerateEdge transform. Tiny widths and inputs: built through the registry as their
MMSegmentation configs build them, forward shapes, one training step, bad arguments."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vistra.data.structures import DataSample, PixelData
from vistra.data.transforms.generate_edge import GenerateEdge
from vistra.models.layers.inverted_residual import Conv2dAdaptivePadding
from vistra.models.layers.make_divisible import make_divisible
from vistra.models.layers.se_layer import SELayer
from vistra.registry import MODELS, TRANSFORMS

BN = dict(type="BN", requires_grad=True)
NUM_CLASSES = 4
SIZE = (32, 32)


def _fcn(in_channels, in_index, channels=8, **kw):
    return dict(type="FCNHead", in_channels=in_channels, in_index=in_index, channels=channels,
                num_convs=1, concat_input=False, num_classes=NUM_CLASSES, norm_cfg=BN, **kw)  # fmt: skip


def _segmentor(backbone, decode_head, auxiliary_head=None):
    cfg = dict(type="EncoderDecoder", data_preprocessor=dict(type="SegDataPreProcessor"),
               backbone=backbone, decode_head=decode_head, train_cfg=dict(),
               test_cfg=dict(mode="whole"))  # fmt: skip
    if auxiliary_head is not None:
        cfg["auxiliary_head"] = auxiliary_head
    return cfg


PID_LOSSES = [
    dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4),
    dict(type="OhemCrossEntropy", thres=0.9, min_kept=100, loss_weight=1.0),
    dict(type="BoundaryLoss", loss_weight=20.0),
    dict(type="OhemCrossEntropy", thres=0.9, min_kept=100, loss_weight=1.0),
]

MODELS_CFG = {
    "cgnet": _segmentor(
        dict(
            type="CGNet",
            norm_cfg=BN,
            num_channels=(8, 16, 16),
            num_blocks=(2, 2),
            reductions=(2, 4),
        ),  # fmt: skip
        _fcn(32, 2, channels=32, dropout_ratio=0),
    ),
    "erfnet": _segmentor(
        dict(
            type="ERFNet",
            enc_downsample_channels=(8, 16, 32),
            enc_stage_non_bottlenecks=(1, 2),
            enc_non_bottleneck_dilations=(2, 4),
            enc_non_bottleneck_channels=(16, 32),
            dec_upsample_channels=(16, 8),
            dec_stages_non_bottleneck=(1, 1),
            dec_non_bottleneck_channels=(16, 8),
        ),  # fmt: skip
        _fcn(8, 0),
    ),
    "fastscnn": _segmentor(
        dict(
            type="FastSCNN",
            downsample_dw_channels=(8, 8),
            global_in_channels=16,
            global_block_channels=(16, 16, 32),
            global_out_channels=32,
            higher_in_channels=16,
            lower_in_channels=32,
            fusion_out_channels=32,
            norm_cfg=BN,
        ),  # fmt: skip
        dict(
            type="DepthwiseSeparableFCNHead",
            in_channels=32,
            channels=32,
            concat_input=True,
            num_classes=NUM_CLASSES,
            in_index=-1,
            norm_cfg=BN,
        ),  # fmt: skip
        [_fcn(32, -2), _fcn(16, -3)],
    ),
    "mobilenet_v2": _segmentor(
        dict(
            type="mmseg.MobileNetV2",
            widen_factor=0.25,
            strides=(1, 2, 2, 1, 1, 1, 1),
            dilations=(1, 1, 1, 2, 2, 4, 4),
            out_indices=(1, 2, 4, 6),
            norm_cfg=BN,
        ),  # fmt: skip
        dict(
            type="ASPPHead",
            in_channels=80,
            in_index=3,
            channels=8,
            dilations=(1, 2),
            num_classes=NUM_CLASSES,
            norm_cfg=BN,
        ),  # fmt: skip
        _fcn(24, 2),
    ),
    "pidnet": _segmentor(
        dict(
            type="PIDNet",
            channels=8,
            ppm_channels=8,
            num_stem_blocks=2,
            num_branch_blocks=2,
            norm_cfg=BN,
        ),  # fmt: skip
        dict(
            type="PIDHead",
            in_channels=32,
            channels=16,
            num_classes=NUM_CLASSES,
            norm_cfg=BN,
            align_corners=True,
            loss_decode=PID_LOSSES,
        ),  # fmt: skip
    ),
    "pidnet-l": _segmentor(
        dict(
            type="PIDNet",
            channels=8,
            ppm_channels=8,
            num_stem_blocks=3,
            num_branch_blocks=2,
            norm_cfg=BN,
        ),  # fmt: skip
        dict(
            type="PIDHead",
            in_channels=32,
            channels=16,
            num_classes=NUM_CLASSES,
            norm_cfg=BN,
            loss_decode=PID_LOSSES,
        ),  # fmt: skip
    ),
}


def _samples(n, size=SIZE, seed=0, edges=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        sample = DataSample(
            metainfo=dict(ori_shape=size, img_shape=size, pad_shape=size),
            gt_sem_seg=PixelData(torch.randint(0, NUM_CLASSES, (1, *size), generator=g)),
        )
        if edges:
            sample.gt_edge_map = PixelData(torch.randint(0, 2, (1, *size), generator=g))
        out.append(sample)
    return out


@pytest.mark.parametrize("name", sorted(MODELS_CFG))
def test_forward_predict_and_train_step(name):
    torch.manual_seed(0)
    model = MODELS.build(MODELS_CFG[name])
    model.init_weights()
    x = torch.randn(2, 3, *SIZE)
    model.train()
    losses = model(x, _samples(2, edges=name.startswith("pidnet")), mode="loss")
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


def test_pidnet_losses_and_training_outputs():
    model = MODELS.build(MODELS_CFG["pidnet"])
    losses = model.train()(torch.randn(2, 3, *SIZE), _samples(2, edges=True), mode="loss")
    assert {"decode.loss_sem_p", "decode.loss_sem_i", "decode.loss_bd", "decode.loss_sem_bd",
            "decode.acc_seg"} <= set(losses)  # fmt: skip
    p, i, d = model.backbone(torch.randn(2, 3, *SIZE))
    assert p.shape == (2, 16, 4, 4) and i.shape == (2, 32, 4, 4) and d.shape == (2, 16, 4, 4)
    with pytest.raises(KeyError, match="GenerateEdge"):
        model(torch.randn(2, 3, *SIZE), _samples(2), mode="loss")


def test_mobilenet_v3_and_lraspp():
    net = MODELS.build(dict(type="mmseg.MobileNetV3", arch="small", out_indices=(0, 1, 12),
                            reduction_factor=2)).eval()  # fmt: skip
    outs = net(torch.randn(1, 3, 33, 47))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 17, 24), (1, 16, 9, 12), (1, 576, 5, 6)]
    assert "layer9.se.conv1.conv.weight" in net.state_dict()
    assert net.layer9.depthwise_conv.conv.dilation == (4, 4)
    large = MODELS.build(dict(type="mmseg.MobileNetV3", arch="large", out_indices=(1, 3, 16)))
    assert [tuple(o.shape[1:]) for o in large.eval()(torch.randn(1, 3, 32, 32))] == [
        (16, 16, 16), (24, 8, 8), (960, 4, 4)]  # fmt: skip
    # the head's context pool is a fixed 49x49 window: feed it maps that large
    head = MODELS.build(dict(type="LRASPPHead", in_channels=(4, 4, 8), in_index=(0, 1, 2),
                             channels=8, branch_channels=(4, 4), input_transform="multiple_select",
                             num_classes=NUM_CLASSES, norm_cfg=BN)).eval()  # fmt: skip
    feats = [torch.randn(1, 4, 98, 98), torch.randn(1, 4, 60, 60), torch.randn(1, 8, 50, 52)]
    assert head(feats).shape == (1, NUM_CLASSES, 98, 98)
    assert {"convs.conv1.weight", "conv_ups.conv_up0.bn.weight", "image_pool.1.conv.weight",
            "conv_up_input.bias", "aspp_conv.conv.weight"} <= set(head.state_dict())  # fmt: skip


def test_mobilenet_v2_layout_and_frozen_stages():
    net = MODELS.build(dict(type="mmseg.MobileNetV2", widen_factor=0.5, out_indices=(6,),
                            frozen_stages=2))  # fmt: skip
    keys = set(net.state_dict())
    assert "layer1.0.conv.1.conv.weight" in keys and "layer1.0.conv.2.conv.weight" not in keys
    assert "layer2.1.conv.2.bn.running_var" in keys
    net.train()
    assert not net.layer2[0].conv[0].bn.training and net.layer3[0].conv[0].bn.training
    assert not any(p.requires_grad for p in net.conv1.parameters())
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 160, 1, 1)


def test_shared_layers():
    assert [make_divisible(v, 8) for v in (3, 16, 20, 32 * 0.35, 100)] == [8, 16, 24, 16, 104]
    se = SELayer(32, ratio=4)
    assert se.conv1.conv.out_channels == 8 and se(torch.randn(2, 32, 3, 3)).shape == (2, 32, 3, 3)
    conv = Conv2dAdaptivePadding(2, 2, 3, stride=2, padding=5)
    x = torch.randn(1, 2, 7, 8)
    want = F.conv2d(F.pad(x, [0, 1, 1, 1]), conv.weight, conv.bias, stride=2)
    assert torch.allclose(conv(x), want)


def _naive_edges(seg, width, ignore=255):
    h, w = seg.shape
    edge = np.zeros((h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            for dy, dx in ((-1, 0), (0, 1), (1, 1), (1, -1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and ignore not in (seg[y, x], seg[yy, xx]):
                    edge[y, x] |= seg[y, x] != seg[yy, xx]
    out = np.zeros_like(edge)
    a = width // 2
    for y in range(h):
        for x in range(w):
            window = edge[max(0, y - a) : y + width - a, max(0, x - a) : x + width - a]
            out[y, x] = window.max()
    return out


@pytest.mark.parametrize("width", [1, 3, 4])
def test_generate_edge_matches_a_naive_reference(width):
    rng = np.random.default_rng(width)
    seg = rng.integers(0, 3, (9, 11)).astype(np.uint8)
    seg[rng.random(seg.shape) < 0.2] = 255
    transform = TRANSFORMS.build(dict(type="GenerateEdge", edge_width=width))
    out = transform(dict(img_shape=seg.shape, gt_seg_map=seg))
    assert out["gt_edge_map"].dtype == np.uint8 and out["edge_width"] == width
    np.testing.assert_array_equal(out["gt_edge_map"], _naive_edges(seg, width))
    with pytest.raises(ValueError, match="edge_width"):
        GenerateEdge(edge_width=0)


def test_ohem_and_boundary_losses():
    torch.manual_seed(0)
    score, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    target[0, 0] = 255
    ohem = MODELS.build(dict(type="OhemCrossEntropy", thres=1.0, min_kept=1))
    valid = target != 255
    want = F.cross_entropy(score, target, ignore_index=255, reduction="none")[valid].mean()
    assert torch.allclose(ohem(score, target), want)  # thres 1 keeps every valid pixel
    assert ohem.loss_name == "loss_ohem"
    bd = MODELS.build(dict(type="BoundaryLoss", loss_weight=2.0))
    logit, gt = torch.randn(2, 1, 4, 4), torch.randint(0, 2, (2, 4, 4))
    pos = gt.float().mean()
    weight = torch.where(gt == 1, 1 - pos, pos).reshape(2, 1, 4, 4)
    want = 2.0 * F.binary_cross_entropy_with_logits(logit, gt[:, None].float(), weight)
    assert torch.allclose(bd(logit, gt), want)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (dict(type="mmseg.MobileNetV3", arch="tiny"), "arch"),
        (dict(type="mmseg.MobileNetV2", out_indices=(7,)), "out_indices"),
        (dict(type="mmseg.MobileNetV2", strides=(1, 2)), "strides"),
        (dict(type="CGNet", num_blocks=(3,)), "num_blocks"),
        (dict(type="FastSCNN", global_in_channels=32), "higher_in_channels"),
        (dict(type="ERFNet", enc_stage_non_bottlenecks=(5, 7)), "enc_stage_non_bottlenecks"),
        (
            dict(
                type="LRASPPHead",
                in_channels=(4, 4, 8),
                in_index=(0, 1, 2),
                channels=8,
                num_classes=2,
                input_transform="resize_concat",
            ),
            "multiple_select",
        ),  # fmt: skip
        (dict(type="PIDHead", in_channels=32, channels=8, num_classes=4), "4 losses"),
        (dict(type="PIDNet", init_cfg=dict(type="Kaiming")), "Pretrained"),
    ],
)
def test_bad_arguments(cfg, match):
    with pytest.raises(Exception, match=match):
        MODELS.build(cfg)
