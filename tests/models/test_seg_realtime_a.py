"""Real-time segmentation networks I: BiSeNetV1, BiSeNetV2, STDC (with STDCHead), ICNet (with
ICNeck), DDRNet (with DDRHead), and the DAPPM/PAPPM layers. Tiny widths and inputs: built
through the registry as their MMSegmentation configs build them, forward shapes, one
training step, bad arguments."""

import pytest
import torch
import torch.nn.functional as F

from vistra.data.structures import DataSample, PixelData
from vistra.models.layers.ppm_variants import DAPPM, PAPPM
from vistra.registry import MODELS

BN = dict(type="BN", requires_grad=True)
NUM_CLASSES = 4
SIZE = (64, 64)
# ResNet-18 at 1/8 of its width: 8, 16, 32, 64 channels
RESNET18 = dict(
    type="ResNet",
    depth=18,
    stem_channels=8,
    base_channels=8,
    num_stages=4,
    out_indices=(0, 1, 2, 3),
    dilations=(1, 1, 1, 1),
    strides=(1, 2, 2, 2),
    norm_cfg=BN,
    norm_eval=False,
    style="pytorch",
    contract_dilation=True,
)


def _fcn(in_channels, in_index, channels=8, **kw):
    return dict(
        type="FCNHead",
        in_channels=in_channels,
        in_index=in_index,
        channels=channels,
        num_convs=1,
        concat_input=False,
        num_classes=NUM_CLASSES,
        norm_cfg=BN,
        **kw,
    )


def _segmentor(backbone, decode_head, auxiliary_head=None, neck=None):
    cfg = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor"),
        backbone=backbone,
        decode_head=decode_head,
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )
    if auxiliary_head is not None:
        cfg["auxiliary_head"] = auxiliary_head
    if neck is not None:
        cfg["neck"] = neck
    return cfg


CE2 = [
    dict(type="CrossEntropyLoss", loss_weight=1.0),
    dict(type="CrossEntropyLoss", loss_weight=0.4),
]

MODELS_CFG = {
    "bisenetv1": _segmentor(
        dict(
            type="BiSeNetV1",
            backbone_cfg=RESNET18,
            context_channels=(16, 32, 64),
            spatial_channels=(8, 8, 8, 16),
            out_channels=16,
            norm_cfg=BN,
        ),
        _fcn(16, 0),
        [_fcn(16, 1), _fcn(16, 2)],
    ),
    "bisenetv2": _segmentor(
        dict(
            type="BiSeNetV2",
            detail_channels=(8, 8, 16),
            semantic_channels=(4, 8, 8, 16),
            semantic_expansion_ratio=2,
            bga_channels=16,
        ),
        _fcn(16, 0),
        [_fcn(c, i) for i, c in enumerate((4, 8, 8, 16), start=1)],
    ),
    "stdc": _segmentor(
        dict(
            type="STDCContextPathNet",
            backbone_cfg=dict(
                type="STDCNet",
                stdc_type="STDCNet1",
                in_channels=3,
                channels=(8, 16, 32, 64, 128),
                bottleneck_type="cat",
                num_convs=4,
                norm_cfg=BN,
                act_cfg=dict(type="ReLU"),
            ),
            last_in_channels=(128, 64),
            out_channels=16,
            ffm_cfg=dict(in_channels=48, out_channels=32, scale_factor=4),
        ),
        _fcn(
            32,
            3,
            align_corners=True,
            sampler=dict(type="OHEMPixelSampler", thresh=0.7, min_kept=100),
        ),
        [
            _fcn(16, 2),
            _fcn(16, 1),
            dict(
                type="STDCHead",
                in_channels=32,
                channels=8,
                num_convs=1,
                num_classes=2,
                boundary_threshold=0.1,
                in_index=0,
                norm_cfg=BN,
                concat_input=False,
                align_corners=True,
                loss_decode=[
                    dict(type="CrossEntropyLoss", loss_name="loss_ce", use_sigmoid=True),
                    dict(type="DiceLoss", loss_name="loss_dice"),
                ],
            ),
        ],
    ),
    "icnet": _segmentor(
        dict(
            type="ICNet",
            backbone_cfg={
                **RESNET18,
                "type": "ResNetV1c",
                "dilations": (1, 1, 2, 4),
                "strides": (1, 2, 1, 1),
            },
            layer_channels=(16, 64),
            light_branch_middle_channels=8,
            psp_out_channels=16,
            out_channels=(8, 16, 16),
            norm_cfg=BN,
        ),
        _fcn(16, 2, dropout_ratio=0),
        [_fcn(16, 0), _fcn(16, 1)],
        neck=dict(type="ICNeck", in_channels=(8, 16, 16), out_channels=16, norm_cfg=BN),
    ),
    "ddrnet": _segmentor(
        dict(type="DDRNet", channels=8, ppm_channels=8, norm_cfg=BN),
        dict(
            type="DDRHead",
            in_channels=32,
            channels=8,
            dropout_ratio=0.0,
            num_classes=NUM_CLASSES,
            norm_cfg=BN,
            loss_decode=CE2,
        ),
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


@pytest.mark.parametrize("name", sorted(MODELS_CFG))
def test_forward_predict_and_train_step(name):
    torch.manual_seed(0)
    model = MODELS.build(MODELS_CFG[name])
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


def test_bisenet_v1_outputs_and_out_indices():
    cfg = dict(MODELS_CFG["bisenetv1"]["backbone"], out_indices=(0, 2))
    backbone = MODELS.build(cfg).eval()
    outs = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 8, 8), (1, 16, 4, 4)]


def test_bisenet_v2_outputs():
    backbone = MODELS.build(MODELS_CFG["bisenetv2"]["backbone"]).eval()
    outs = backbone(torch.randn(1, 3, 64, 64))
    shapes = [tuple(o.shape[1:]) for o in outs]
    assert shapes == [(16, 8, 8), (4, 16, 16), (8, 8, 8), (8, 4, 4), (16, 2, 2)]


def test_stdc_add_fusion_shares_the_downsample_conv():
    net = MODELS.build(
        dict(
            type="STDCNet",
            stdc_type="STDCNet2",
            in_channels=3,
            channels=(8, 16, 32, 64, 128),
            bottleneck_type="add",
            norm_cfg=BN,
            act_cfg=dict(type="ReLU"),
            with_final_conv=True,
        )
    )
    keys = net.state_dict()
    # the same conv under two names, as MMSegmentation's checkpoints have it
    assert "stages.2.0.downsample.conv.weight" in keys
    assert "stages.2.0.layers.0.1.conv.weight" in keys
    outs = net.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(32, 8, 8), (64, 4, 4), (1024, 2, 2)]


def test_stdc_head_boundary_targets_match_a_naive_reference():
    head = MODELS.build(MODELS_CFG["stdc"]["auxiliary_head"][2])
    label = torch.zeros(1, 1, 16, 16)
    label[..., 4:12, 4:12] = 3
    label[..., 0, :] = 255
    got = head.boundary_targets(label)
    lap = head.laplacian_kernel

    def bin_(x):
        return (x > 0.1).float()

    full = F.conv2d(label, lap, padding=1).clamp(min=0)
    x2 = F.conv2d(label, lap, stride=2, padding=1).clamp(min=0)
    x4 = F.conv2d(label, lap, stride=4, padding=1).clamp(min=0)
    up = [bin_(full)] + [bin_(F.interpolate(t, (16, 16), mode="nearest")) for t in (x2, x4)]
    want = sum(w * t for w, t in zip((0.6, 0.3, 0.1), up))
    assert torch.equal(got, bin_(want).long())
    assert got.sum() > 0 and got.max() == 1
    assert "fusion_kernel" in dict(head.named_parameters())
    assert not head.fusion_kernel.requires_grad


def test_icnet_branch_shapes():
    backbone = MODELS.build(MODELS_CFG["icnet"]["backbone"]).eval()
    outs = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 8, 8), (1, 16, 5, 5), (1, 16, 2, 2)]
    assert backbone.backbone.maxpool.ceil_mode  # 16 -> 9, not 8


def test_ddrnet_training_returns_the_auxiliary_map():
    net = MODELS.build(MODELS_CFG["ddrnet"]["backbone"])
    aux, out = net.train()(torch.randn(2, 3, 64, 64))
    assert aux.shape == (2, 16, 8, 8) and out.shape == (2, 32, 8, 8)
    assert net.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 32, 8, 8)


@pytest.mark.parametrize("cls", [DAPPM, PAPPM])
def test_pyramid_pooling_variants(cls):
    ppm = cls(16, 4, 8, num_scales=5).eval()
    assert ppm(torch.randn(1, 16, 8, 8)).shape == (1, 8, 8, 8)
    assert ppm.scales[0].norm.num_features == 16  # norm before conv: the input width


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (
            dict(
                type="STDCNet",
                stdc_type="STDCNet3",
                in_channels=3,
                channels=(8,) * 5,
                bottleneck_type="cat",
                norm_cfg=BN,
                act_cfg=None,
            ),
            "STDCNet1",
        ),
        (
            dict(
                type="STDCNet",
                stdc_type="STDCNet1",
                in_channels=3,
                channels=(8,) * 5,
                bottleneck_type="mul",
                norm_cfg=BN,
                act_cfg=None,
            ),
            "bottleneck_type",
        ),
        (
            dict(type="BiSeNetV1", backbone_cfg=RESNET18, spatial_channels=(8, 8, 16)),
            "spatial_channels",
        ),
        (dict(type="BiSeNetV2", out_indices=(0, 5)), "out_indices"),
        (dict(type="ICNeck", in_channels=(8, 16)), "in_channels"),
        (dict(type="DDRHead", in_channels=32, channels=8, num_classes=4), "two losses"),
    ],
)
def test_bad_arguments_name_what_is_wrong(cfg, match):
    with pytest.raises((KeyError, ValueError, TypeError), match=match):
        MODELS.build(cfg)
