"""HRNet backbone, OCRHead (cascade), ANNHead, ISAHead and the shared SelfAttentionBlock."""

import pytest
import torch

from vistra.data.structures import DataSample, PixelData
from vistra.models.layers.self_attention_block import SelfAttentionBlock
from vistra.registry import MODELS, default_scope

BN = dict(type="BN")
TINY_EXTRA = dict(
    stage1=dict(num_modules=1, num_branches=1, block="BOTTLENECK", num_blocks=(1,),
                num_channels=(8,)),
    stage2=dict(num_modules=1, num_branches=2, block="BASIC", num_blocks=(1, 1),
                num_channels=(4, 8)),
    stage3=dict(num_modules=1, num_branches=3, block="BASIC", num_blocks=(1, 1, 1),
                num_channels=(4, 8, 16)),
    stage4=dict(num_modules=2, num_branches=4, block="BASIC", num_blocks=(1, 1, 1, 1),
                num_channels=(4, 8, 16, 32)),
)  # fmt: skip
HR_CH = [4, 8, 16, 32]
PREP = dict(type="SegDataPreProcessor", mean=[0.0] * 3, std=[1.0] * 3, size_divisor=32)


def _hrnet(**kw):
    return dict(type="HRNet", extra=TINY_EXTRA, norm_cfg=BN, **kw)


def _resnet():
    return dict(type="ResNetV1c", depth=18, base_channels=4, stem_channels=8, norm_cfg=BN,
                dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), contract_dilation=True)  # fmt: skip


FCN_HR = dict(type="FCNHead", in_channels=HR_CH, in_index=(0, 1, 2, 3), channels=sum(HR_CH),
              input_transform="resize_concat", kernel_size=1, num_convs=1, concat_input=False,
              dropout_ratio=-1, num_classes=3, norm_cfg=BN)  # fmt: skip
MODELS_CFG = {
    "hrnet-fcn": dict(type="EncoderDecoder", backbone=_hrnet(), decode_head=FCN_HR),
    "ocrnet-hr": dict(
        type="CascadeEncoderDecoder",
        num_stages=2,
        backbone=_hrnet(),
        decode_head=[
            FCN_HR,
            dict(
                type="OCRHead",
                in_channels=HR_CH,
                in_index=(0, 1, 2, 3),
                input_transform="resize_concat",
                channels=16,
                ocr_channels=8,
                dropout_ratio=-1,
                num_classes=3,
                norm_cfg=BN,
            ),
        ],
    ),
    "ocrnet-r": dict(
        type="CascadeEncoderDecoder",
        num_stages=2,
        backbone=_resnet(),
        decode_head=[
            dict(
                type="FCNHead",
                in_channels=16,
                in_index=2,
                channels=8,
                num_convs=1,
                concat_input=False,
                num_classes=3,
                norm_cfg=BN,
            ),
            dict(
                type="OCRHead",
                in_channels=32,
                in_index=3,
                channels=16,
                ocr_channels=8,
                num_classes=3,
                norm_cfg=BN,
            ),
        ],
    ),
    "ann": dict(
        type="EncoderDecoder",
        backbone=_resnet(),
        decode_head=dict(
            type="ANNHead",
            in_channels=[16, 32],
            in_index=[2, 3],
            channels=16,
            project_channels=8,
            query_scales=(1,),
            key_pool_scales=(1, 3),
            num_classes=3,
            norm_cfg=BN,
        ),
    ),
    "isanet": dict(
        type="EncoderDecoder",
        backbone=_resnet(),
        decode_head=dict(
            type="ISAHead",
            in_channels=32,
            in_index=3,
            channels=16,
            isa_channels=8,
            down_factor=(3, 2),
            num_classes=3,
            norm_cfg=BN,
        ),
    ),
}


def _build(cfg):
    with default_scope("mmseg"):
        model = MODELS.build({**cfg, "data_preprocessor": PREP})
    model.init_weights()
    return model


def _batch(n=2, size=(32, 32)):
    g = torch.Generator().manual_seed(0)
    inputs = [torch.rand(3, *size, generator=g) * 255 for _ in range(n)]
    samples = [
        DataSample(gt_sem_seg=PixelData(torch.randint(0, 3, (1, *size), generator=g)),
                   metainfo=dict(img_shape=size, ori_shape=size))
        for _ in range(n)
    ]  # fmt: skip
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize("name", sorted(MODELS_CFG))
def test_build_forward_train_step(name):
    torch.manual_seed(0)
    model = _build(MODELS_CFG[name])
    model.train()
    data = model.data_preprocessor(_batch(), training=True)
    losses = model(**data, mode="loss")
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(), training=False)
        preds = model(**data, mode="predict")
    assert preds[0].seg_logits.data.shape == (3, 32, 32)
    assert preds[0].pred_sem_seg.data.shape == (1, 32, 32)


def test_hrnet_outputs_and_keys():
    with default_scope("mmseg"):
        net = MODELS.build(_hrnet())
    net.eval()
    outs = net(torch.randn(1, 3, 36, 52))  # odd sizes inside: fusion resizes exactly
    assert [tuple(o.shape) for o in outs] == [(1, 4, 9, 13), (1, 8, 5, 7), (1, 16, 3, 4),
                                              (1, 32, 2, 2)]  # fmt: skip
    keys = set(net.state_dict())
    assert {"conv1.weight", "bn1.weight", "conv2.weight", "bn2.running_var",
            "layer1.0.conv3.weight", "layer1.0.downsample.1.weight", "transition1.0.0.weight",
            "transition1.1.0.0.weight", "transition2.2.0.1.bias",
            "stage2.0.branches.1.0.bn2.weight", "stage4.1.fuse_layers.0.3.0.weight",
            "stage4.1.fuse_layers.3.0.2.1.weight"} <= keys  # fmt: skip
    with default_scope("mmseg"):
        single = MODELS.build(_hrnet(multiscale_output=False))
    single.eval()
    assert len(single(torch.randn(1, 3, 32, 32))) == 1


def test_hrnet_frozen_and_norm_eval():
    with default_scope("mmseg"):
        net = MODELS.build(_hrnet(frozen_stages=2, norm_eval=True))
    net.train()
    assert not any(p.requires_grad for p in net.stage2.parameters())
    assert not any(p.requires_grad for p in net.transition1.parameters())
    assert all(p.requires_grad for p in net.stage3.parameters())
    assert not net.stage4[0].branches[0][0].bn1.training


def test_self_attention_block_layout_and_zero_out():
    blk = SelfAttentionBlock(8, 8, 4, 6, True, None, None, 2, 1, True, False, True, True,
                             None, BN, dict(type="ReLU"))  # fmt: skip
    keys = set(blk.state_dict())
    assert {"key_project.1.conv.weight", "query_project.0.bn.weight", "value_project.weight",
            "out_project.bias"} <= keys  # fmt: skip
    assert blk.query_project is blk.key_project
    assert torch.count_nonzero(blk.out_project.weight) == 0  # upstream zero-inits it
    out = blk(torch.randn(2, 8, 5, 7), torch.randn(2, 8, 3, 3))
    assert out.shape == (2, 6, 5, 7)


def test_isa_padding_roundtrip_shape():
    head = MODELS.build(dict(type="ISAHead", in_channels=8, channels=8, isa_channels=4,
                             down_factor=(4, 3), num_classes=2, norm_cfg=BN))  # fmt: skip
    assert head([torch.randn(1, 8, 7, 5)]).shape == (1, 2, 7, 5)


def test_bad_arguments():
    bad = {**TINY_EXTRA, "stage2": {**TINY_EXTRA["stage2"], "block": "BASICX"}}
    with pytest.raises(Exception, match="BASICX.*valid"):
        MODELS.build(dict(type="HRNet", extra=bad))
    bad = {**TINY_EXTRA, "stage3": {**TINY_EXTRA["stage3"], "num_channels": (4, 8)}}
    with pytest.raises(Exception, match="num_branches=3"):
        MODELS.build(dict(type="HRNet", extra=bad))
    with pytest.raises(Exception, match="stage4"):
        MODELS.build(dict(type="HRNet", extra={k: TINY_EXTRA[k] for k in ("stage1", "stage2")}))
    with pytest.raises(Exception, match="two inputs"):
        MODELS.build(dict(type="ANNHead", in_channels=[8], in_index=[0], channels=8,
                          project_channels=4, num_classes=2))  # fmt: skip


def test_unsupported_query_scales_fail_clearly():
    head = MODELS.build(dict(type="ANNHead", in_channels=[8, 8], in_index=[0, 1], channels=8,
                             project_channels=4, query_scales=(2,), num_classes=3))  # fmt: skip
    with pytest.raises(NotImplementedError, match="query_scales"):
        head([torch.randn(1, 8, 4, 4)] * 2)
    head = MODELS.build(dict(type="OCRHead", in_channels=8, channels=8, ocr_channels=4,
                             scale=2, num_classes=3))  # fmt: skip
    with pytest.raises(NotImplementedError, match="scale"):
        head([torch.randn(1, 8, 4, 4)], torch.randn(1, 3, 4, 4))
