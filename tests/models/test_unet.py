"""UNet backbone: MMSeg keys, output shapes, upsample variants, divisibility check, with_cp."""

import pytest
import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.backbones.unet import UNet
from vistra.registry import MODELS


def _unet(**kwargs):
    torch.manual_seed(0)
    model = MODELS.build(dict(type="UNet", base_channels=4, **kwargs))
    model.init_weights()
    return model


def test_default_unet_shapes_and_keys():
    model = _unet()
    outs = model(torch.randn(2, 3, 32, 32))
    shapes = [tuple(o.shape) for o in outs]
    assert shapes == [(2, 64, 2, 2), (2, 32, 4, 4), (2, 16, 8, 8), (2, 8, 16, 16), (2, 4, 32, 32)]
    keys = set(model.state_dict())
    assert {
        "encoder.0.0.convs.0.conv.weight", "encoder.0.0.convs.1.bn.running_mean",
        "encoder.1.1.convs.0.conv.weight",  # encoder.1.0 is the max pool
        "encoder.4.1.convs.1.bn.weight",
        "decoder.0.conv_block.convs.0.conv.weight", "decoder.3.conv_block.convs.1.bn.bias",
        "decoder.0.upsample.interp_upsample.1.conv.weight",  # index 0 is the Upsample
    } <= keys  # fmt: skip
    assert isinstance(model.encoder[1][0], nn.MaxPool2d)
    assert model.state_dict()["decoder.3.conv_block.convs.0.conv.weight"].shape == (32, 64, 3, 3)
    assert model.state_dict()["decoder.0.upsample.interp_upsample.1.conv.weight"].shape == (
        4, 8, 1, 1,
    )  # fmt: skip


def test_strided_convs_instead_of_max_pool_and_deconv_upsampling():
    model = _unet(
        strides=(1, 2, 2, 2, 2), downsamples=(False, False, False, False),
        upsample_cfg=dict(type="DeconvModule", kernel_size=4),
    )  # fmt: skip
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.encoder[1][0].convs[0].conv.stride == (2, 2)
    keys = set(model.state_dict())
    assert "decoder.1.upsample.deconv_upsamping.0.weight" in keys  # MMSeg's spelling
    assert "decoder.1.upsample.deconv_upsamping.1.running_var" in keys
    outs = model(torch.randn(1, 3, 32, 32))
    assert tuple(outs[-1].shape) == (1, 4, 32, 32)


def test_stage_without_downsampling_uses_a_1x1_conv_and_lowers_the_rate():
    model = _unet(downsamples=(True, True, True, False))
    assert model.whole_downsample_rate == 8
    assert "decoder.3.upsample.conv.weight" in model.state_dict()
    outs = model(torch.randn(1, 3, 24, 24))
    assert [tuple(o.shape[-2:]) for o in outs] == [(3, 3), (3, 3), (6, 6), (12, 12), (24, 24)]


def test_divisibility_error_names_the_rate():
    model = _unet()
    with pytest.raises(
        ValueError, match=r"\(36, 40\) should be divisible by the whole downsample rate 16"
    ):
        model(torch.randn(1, 3, 36, 40))


def test_argument_length_errors():
    with pytest.raises(ValueError, match="length of dec_num_convs"):
        _unet(dec_num_convs=(2, 2, 2))
    with pytest.raises(ValueError, match="length of strides"):
        _unet(strides=(1, 1, 1, 1))
    with pytest.raises(NotImplementedError, match="dcn"):
        _unet(dcn=dict(type="DCN"))


def test_deconv_kernel_check():
    with pytest.raises(ValueError, match="kernel_size"):
        MODELS.build(dict(type="DeconvModule", in_channels=4, out_channels=2, kernel_size=3))


def test_with_cp_gives_the_same_gradients():
    grads = []
    for with_cp in (False, True):
        model = _unet(num_stages=3, strides=(1, 1, 1), enc_num_convs=(2, 2, 2),
                      dec_num_convs=(2, 2), downsamples=(True, True), enc_dilations=(1, 1, 1),
                      dec_dilations=(1, 1), with_cp=with_cp)  # fmt: skip
        torch.manual_seed(1)
        x = torch.randn(2, 3, 8, 8, requires_grad=True)
        model(x)[-1].square().mean().backward()
        grads.append(model.encoder[0][0].convs[0].conv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_norm_eval_keeps_batch_norm_in_eval_mode():
    model = _unet(norm_eval=True).train()
    assert model.training
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_default_init_and_pretrained_conflict():
    assert UNet(base_channels=2).init_cfg[0] == dict(type="Kaiming", layer="Conv2d")
    with pytest.raises(ValueError, match="cannot be set at the same time"):
        UNet(base_channels=2, pretrained="x.pth", init_cfg=dict(type="Kaiming"))


def test_unet_fcn_segmentor_predicts_full_resolution():
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type="EncoderDecoder",
            data_preprocessor=dict(type="SegDataPreProcessor"),
            backbone=dict(type="UNet", base_channels=4, norm_cfg=dict(type="SyncBN")),
            decode_head=dict(
                type="FCNHead",
                in_channels=4,
                in_index=4,
                channels=4,
                num_convs=1,
                concat_input=False,
                dropout_ratio=0.1,
                num_classes=3,
                norm_cfg=dict(type="SyncBN"),
                align_corners=False,
            ),
            test_cfg=dict(mode="slide", crop_size=(32, 32), stride=(16, 16)),
        )  # fmt: skip
    )
    model.init_weights()
    model.eval()
    x = torch.randn(1, 3, 48, 64)
    preds = model.predict(x, [DataSample(metainfo=dict(ori_shape=(48, 64), img_shape=(48, 64)))])
    assert preds[0].pred_sem_seg.data.shape == (1, 48, 64)
