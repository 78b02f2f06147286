"""EncoderDecoder / CascadeEncoderDecoder: MMSeg checkpoint keys, loss names, prediction
post-processing (padding, flips, ori_shape), whole vs slide inference, PointRend."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample, PixelData
from vistra.models.segmentors import slide_windows
from vistra.registry import MODELS, default_scope

SYNC_BN = dict(type="SyncBN", requires_grad=True)


# ----------------------------------------------------------------------------- helpers
def _pspnet_cfg(depth=18, num_classes=5, channels=16, aux=True, **extra):
    """PSPNet-D8 as MMSeg's _base_/models/pspnet_r50-d8.py, with small heads by default."""
    wide = depth >= 50
    cfg = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", size=(64, 64)),
        backbone=dict(
            type="ResNetV1c", depth=depth, num_stages=4, out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), norm_cfg=SYNC_BN, norm_eval=False,
            style="pytorch", contract_dilation=True,
        ),
        decode_head=dict(
            type="PSPHead", in_channels=2048 if wide else 512, in_index=3, channels=channels,
            pool_scales=(1, 2, 3, 6), dropout_ratio=0.1, num_classes=num_classes,
            norm_cfg=SYNC_BN, align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        ),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )  # fmt: skip
    if aux:
        cfg["auxiliary_head"] = dict(
            type="FCNHead", in_channels=1024 if wide else 256, in_index=2,
            channels=channels // 2, num_convs=1, concat_input=False, dropout_ratio=0.1,
            num_classes=num_classes, norm_cfg=SYNC_BN, align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4),
        )  # fmt: skip
    cfg.update(extra)
    return cfg


def _samples(n, size, num_classes=5, seed=0, **meta):
    g = torch.Generator().manual_seed(seed)
    return [
        DataSample(
            metainfo=dict(ori_shape=size, img_shape=size, **meta),
            gt_sem_seg=PixelData(torch.randint(0, num_classes, (1, *size), generator=g)),
        )
        for _ in range(n)
    ]


class PixelBackbone(nn.Module):
    """A 1x1 conv: every output pixel depends on its input pixel only."""

    def __init__(self, channels=4):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 1)

    def forward(self, x):
        return (torch.tanh(self.conv(x)),)


class CropMeanBackbone(nn.Module):
    """Every output pixel is the mean of the whole input crop (depends on the crop)."""

    def forward(self, x):
        return (x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous(),)


def _pixel_model(num_classes=3, test_cfg=None, backbone=None, **head):
    torch.manual_seed(0)
    channels = 3 if isinstance(backbone, CropMeanBackbone) else 4
    head_cfg = dict(
        type="FCNHead", in_channels=channels, channels=channels, num_convs=0,
        concat_input=False, kernel_size=1, dropout_ratio=0, num_classes=num_classes,
    )  # fmt: skip
    head_cfg.update(head)
    model = MODELS.build(
        dict(
            type="EncoderDecoder",
            backbone=backbone or PixelBackbone(channels),
            decode_head=head_cfg,
            test_cfg=test_cfg or dict(mode="whole"),
            data_preprocessor=dict(type="BaseDataPreprocessor"),
        )  # fmt: skip
    )
    model.init_weights()
    return model.eval()


# ----------------------------------------------------------------------------- MMSeg keys
def _bn(prefix, c):
    keys = {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}
    keys[f"{prefix}.num_batches_tracked"] = ()
    return keys


def _conv_module(prefix, cout, cin, k):
    return {f"{prefix}.conv.weight": (cout, cin, k, k), **_bn(f"{prefix}.bn", cout)}


def mmseg_pspnet_r50_keys(num_classes=19):
    """Key -> shape of MMSeg's pspnet_r50-d8 with its FCN auxiliary head, derived from its
    modules: MMSeg ResNetV1c (flat deep stem: convs at stem.0/3/6, BNs at stem.1/4/7),
    PSPHead (PPM branches: Sequential(pool, ConvModule)), FCNHead(num_convs=1)."""
    keys = {}
    for conv, bn, cin, cout in ((0, 1, 3, 32), (3, 4, 32, 32), (6, 7, 32, 64)):
        keys[f"backbone.stem.{conv}.weight"] = (cout, cin, 3, 3)
        keys.update(_bn(f"backbone.stem.{bn}", cout))
    inplanes = 64
    for i, blocks in enumerate((3, 4, 6, 3)):
        planes = 64 * 2**i
        for b in range(blocks):
            p = f"backbone.layer{i + 1}.{b}"
            cin = inplanes if b == 0 else planes * 4
            keys[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            keys.update({**_bn(f"{p}.bn1", planes), **_bn(f"{p}.bn2", planes)})
            keys.update(_bn(f"{p}.bn3", planes * 4))
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                keys.update(_bn(f"{p}.downsample.1", planes * 4))
        inplanes = planes * 4
    keys["decode_head.conv_seg.weight"] = (num_classes, 512, 1, 1)
    keys["decode_head.conv_seg.bias"] = (num_classes,)
    for i in range(4):
        keys.update(_conv_module(f"decode_head.psp_modules.{i}.1", 512, 2048, 1))
    keys.update(_conv_module("decode_head.bottleneck", 512, 2048 + 4 * 512, 3))
    keys["auxiliary_head.conv_seg.weight"] = (num_classes, 256, 1, 1)
    keys["auxiliary_head.conv_seg.bias"] = (num_classes,)
    keys.update(_conv_module("auxiliary_head.convs.0", 256, 1024, 3))
    return keys


def _to_mmseg_stem(key):
    stem = {"0.conv": "0", "0.bn": "1", "1.conv": "3", "1.bn": "4", "2.conv": "6", "2.bn": "7"}
    for ours, theirs in stem.items():
        if key.startswith(f"backbone.stem.{ours}."):
            return key.replace(f"backbone.stem.{ours}.", f"backbone.stem.{theirs}.")
    return key


def test_pspnet_r50_d8_keys_and_shapes_are_mmsegs_and_load_strictly():
    cfg = _pspnet_cfg(depth=50, num_classes=19, channels=512)
    with default_scope("mmseg"), torch.device("meta"):  # as the config's default_scope does
        model = MODELS.build(cfg)
    expected = mmseg_pspnet_r50_keys(19)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    # Without the scope, the plain (MMPretrain) ResNetV1c nests its stem, and still loads
    # a published MMSeg checkpoint (flat stem keys) strictly.
    with torch.device("meta"):
        plain = MODELS.build(_pspnet_cfg(depth=50, num_classes=19, channels=512))
    ours = {_to_mmseg_stem(k): tuple(v.shape) for k, v in plain.state_dict().items()}
    assert ours == expected
    state = {k: torch.empty(shape, device="meta") for k, shape in expected.items()}
    result = plain.load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_auxiliary_head_list_is_a_module_list_with_indexed_keys():
    aux = _pspnet_cfg()["auxiliary_head"]
    with torch.device("meta"):
        model = MODELS.build(_pspnet_cfg(auxiliary_head=[aux, copy.deepcopy(aux)]))
    keys = model.state_dict().keys()
    assert (
        "auxiliary_head.0.conv_seg.weight" in keys
        and "auxiliary_head.1.convs.0.conv.weight" in keys
    )


def test_default_data_preprocessor_is_seg_data_preprocessor():
    cfg = _pspnet_cfg()
    cfg["data_preprocessor"] = dict(mean=[1.0, 2.0, 3.0], std=[1.0, 1.0, 1.0])  # no type
    with torch.device("meta"):
        model = MODELS.build(cfg)
        bare = MODELS.build(_pspnet_cfg(data_preprocessor=None))
    assert type(model.data_preprocessor).__name__ == "SegDataPreProcessor"
    assert type(bare.data_preprocessor).__name__ == "SegDataPreProcessor"


# ----------------------------------------------------------------------------- loss
def test_loss_keys_are_prefixed_and_backward_reaches_the_backbone():
    torch.manual_seed(0)
    model = MODELS.build(_pspnet_cfg())
    model.init_weights()
    losses = model(torch.randn(2, 3, 64, 64), _samples(2, (64, 64)), mode="loss")
    assert set(losses) == {"decode.loss_ce", "decode.acc_seg", "aux.loss_ce", "aux.acc_seg"}
    assert 0 <= float(losses["decode.acc_seg"]) <= 100
    (losses["decode.loss_ce"] + losses["aux.loss_ce"]).backward()
    assert model.backbone.stem[0].conv.weight.grad.abs().sum() > 0


def test_auxiliary_list_losses_use_indexed_prefixes_and_their_loss_weight():
    aux = _pspnet_cfg()["auxiliary_head"]
    heavy, light = copy.deepcopy(aux), copy.deepcopy(aux)
    heavy["loss_decode"]["loss_weight"] = 1.0
    light["loss_decode"]["loss_weight"] = 0.4
    torch.manual_seed(0)
    model = MODELS.build(_pspnet_cfg(auxiliary_head=[heavy, light]))
    model.auxiliary_head[1].load_state_dict(model.auxiliary_head[0].state_dict())
    model.eval()  # no dropout: both heads compute the same logits
    losses = model.loss(torch.randn(1, 3, 64, 64), _samples(1, (64, 64)))
    assert set(losses) == {
        "decode.loss_ce", "decode.acc_seg", "aux_0.loss_ce", "aux_0.acc_seg",
        "aux_1.loss_ce", "aux_1.acc_seg",
    }  # fmt: skip
    torch.testing.assert_close(losses["aux_1.loss_ce"], 0.4 * losses["aux_0.loss_ce"])


def test_with_cp_backbone_gives_the_same_gradients():
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        cfg = _pspnet_cfg(aux=False)
        cfg["backbone"]["with_cp"] = with_cp
        cfg["decode_head"]["dropout_ratio"] = 0
        model = MODELS.build(cfg)
        model.init_weights()
        torch.manual_seed(1)
        loss = model.loss(torch.randn(2, 3, 32, 32), _samples(2, (32, 32)))["decode.loss_ce"]
        loss.backward()
        grads.append(model.backbone.layer1[0].conv1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_real_preprocessor_pipeline_loss_and_predict():
    torch.manual_seed(0)
    model = MODELS.build(_pspnet_cfg())
    model.init_weights()
    g = torch.Generator().manual_seed(0)
    batch = {
        "inputs": [torch.randint(0, 256, (3, 48, 56), dtype=torch.uint8, generator=g)] * 2,
        "data_samples": _samples(2, (48, 56)),
    }
    data = model.data_preprocessor(copy.deepcopy(batch), training=True)
    assert data["inputs"].shape == (2, 3, 64, 64)
    assert set(model(**data, mode="loss")) >= {"decode.loss_ce", "aux.loss_ce"}
    model.eval()
    preds = model.val_step(copy.deepcopy(batch))
    assert preds[0].pred_sem_seg.data.shape == (1, 48, 56)


# ----------------------------------------------------------------------------- predict
def test_predict_without_samples_gives_raw_logits_and_argmax():
    model = _pixel_model()
    x = torch.randn(2, 3, 9, 11)
    preds = model.predict(x)
    logits = model(x, mode="tensor")
    assert len(preds) == 2 and preds[1].seg_logits.data.shape == (3, 9, 11)
    torch.testing.assert_close(preds[1].seg_logits.data, logits[1])  # not softmaxed (MMSeg 1.x)
    assert torch.equal(preds[1].pred_sem_seg.data, logits[1].argmax(0, keepdim=True))


@pytest.mark.parametrize("key", ["padding_size", "img_padding_size"])
def test_predict_removes_padding_and_returns_ori_shape(key):
    model = _pixel_model()
    image = torch.randn(1, 3, 10, 12)
    padded = F.pad(image, (0, 4, 0, 6), value=5.0)  # right 4, bottom 6
    meta = dict(ori_shape=(10, 12), img_shape=(10, 12), pad_shape=(16, 16))
    meta[key] = [0, 4, 0, 6]
    pred = model.predict(padded, [DataSample(metainfo=meta)])[0]
    assert pred.seg_logits.data.shape == (3, 10, 12) and pred.pred_sem_seg.data.shape == (1, 10, 12)
    torch.testing.assert_close(pred.seg_logits.data, model(image, mode="tensor")[0])


def test_img_padding_size_wins_over_padding_size():
    model = _pixel_model()
    image = torch.randn(1, 3, 8, 8)
    padded = F.pad(image, (2, 0, 0, 0))  # left 2
    meta = dict(ori_shape=(8, 8), img_shape=(8, 8), pad_shape=(8, 10), padding_size=[0, 0, 0, 0],
                img_padding_size=[2, 0, 0, 0])  # fmt: skip
    pred = model.predict(padded, [DataSample(metainfo=meta)])[0]
    torch.testing.assert_close(pred.seg_logits.data, model(image, mode="tensor")[0])


def test_predict_resizes_to_a_different_ori_shape_bilinearly():
    model = _pixel_model()
    x = torch.randn(1, 3, 10, 12)
    meta = dict(ori_shape=(20, 30), img_shape=(10, 12))
    pred = model.predict(x, [DataSample(metainfo=meta)])[0]
    expected = F.interpolate(
        model(x, mode="tensor"), (20, 30), mode="bilinear", align_corners=False
    )
    assert pred.seg_logits.data.shape == (3, 20, 30)
    torch.testing.assert_close(pred.seg_logits.data, expected[0])


@pytest.mark.parametrize("direction,dim", [("horizontal", 3), ("vertical", 2)])
def test_predict_undoes_flip(direction, dim):
    model = _pixel_model()
    image = torch.randn(1, 3, 10, 12)
    meta = dict(ori_shape=(10, 12), img_shape=(10, 12), flip=True, flip_direction=direction)
    pred = model.predict(image.flip(dim), [DataSample(metainfo=meta)])[0]
    torch.testing.assert_close(pred.seg_logits.data, model(image, mode="tensor")[0])


def test_predict_undoes_flip_after_removing_padding():
    model = _pixel_model()
    image = torch.randn(1, 3, 10, 12)
    padded = F.pad(image.flip(3), (0, 4, 0, 0))
    meta = dict(ori_shape=(10, 12), img_shape=(10, 12), pad_shape=(10, 16), padding_size=[0, 4, 0, 0], flip=True,
                flip_direction="horizontal")  # fmt: skip
    pred = model.predict(padded, [DataSample(metainfo=meta)])[0]
    torch.testing.assert_close(pred.seg_logits.data, model(image, mode="tensor")[0])


def test_unknown_flip_direction_is_an_error():
    model = _pixel_model()
    meta = dict(ori_shape=(4, 4), img_shape=(4, 4), flip=True, flip_direction="diagonal")
    with pytest.raises(ValueError, match="diagonal"):
        model.predict(torch.randn(1, 3, 4, 4), [DataSample(metainfo=meta)])


def test_binary_head_uses_sigmoid_and_threshold():
    model = _pixel_model(
        num_classes=2, out_channels=1, threshold=0.6,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
    )  # fmt: skip
    x = torch.randn(1, 3, 6, 7)
    pred = model.predict(x, [DataSample(metainfo=dict(ori_shape=(6, 7), img_shape=(6, 7)))])[0]
    prob = model(x, mode="tensor")[0].sigmoid()
    torch.testing.assert_close(pred.seg_logits.data, prob)
    assert torch.equal(pred.pred_sem_seg.data, (prob > 0.6).float())
    samples = _samples(1, (6, 7), num_classes=2)
    assert set(model.loss(x, samples)) == {"decode.loss_ce", "decode.acc_seg"}


# ----------------------------------------------------------------------------- slide
def test_slide_windows_hand_made():
    windows = slide_windows((37, 45), crop_size=(16, 16), stride=(10, 12))
    ys = sorted({(y1, y2) for y1, y2, _, _ in windows})
    xs = sorted({(x1, x2) for _, _, x1, x2 in windows})
    assert ys == [(0, 16), (10, 26), (20, 36), (21, 37)]
    assert xs == [(0, 16), (12, 28), (24, 40), (29, 45)]
    assert len(windows) == 16
    assert slide_windows((10, 20), crop_size=(16, 32), stride=(8, 8)) == [(0, 10, 0, 20)]


def _slide(model, crop, stride):
    model.test_cfg = dict(mode="slide", crop_size=crop, stride=stride)
    return model


def test_slide_equals_whole_when_the_crop_covers_the_image():
    torch.manual_seed(0)
    model = MODELS.build(_pspnet_cfg(aux=False))
    model.init_weights()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    meta = [dict(ori_shape=(64, 64), img_shape=(64, 64))]
    whole = model.inference(x, copy.deepcopy(meta))
    slide = _slide(model, (64, 64), (32, 32)).inference(x, copy.deepcopy(meta))
    torch.testing.assert_close(slide, whole)


def test_slide_on_an_image_smaller_than_the_crop():
    torch.manual_seed(0)
    model = MODELS.build(_pspnet_cfg(aux=False))
    model.init_weights()
    model.eval()
    x = torch.randn(1, 3, 40, 50)
    meta = [dict(ori_shape=(40, 50), img_shape=(40, 50))]
    whole = model.inference(x, copy.deepcopy(meta))
    slide = _slide(model, (64, 64), (48, 48)).inference(x, copy.deepcopy(meta))
    assert slide.shape == (1, 5, 40, 50)
    torch.testing.assert_close(slide, whole)


def test_slide_with_sizes_not_divisible_by_the_stride_matches_a_pixelwise_model():
    model = _pixel_model()
    x = torch.randn(2, 3, 37, 45)
    meta = [dict(ori_shape=(37, 45), img_shape=(37, 45)) for _ in range(2)]
    whole = model.inference(x, copy.deepcopy(meta))
    slide = _slide(model, (16, 16), (10, 12)).inference(x, meta)
    torch.testing.assert_close(slide, whole)
    assert meta[0]["img_shape"] == (37, 45)  # the caller's metainfo is left alone


def test_slide_averages_overlapping_crops():
    model = _slide(_pixel_model(backbone=CropMeanBackbone()), (16, 16), (10, 12))
    x = torch.randn(1, 3, 37, 45)
    got = model.inference(x, [dict(ori_shape=(37, 45), img_shape=(37, 45))])
    head = model.decode_head
    total, count = torch.zeros(1, 3, 37, 45), torch.zeros(1, 1, 37, 45)
    for y1, y2, x1, x2 in slide_windows((37, 45), (16, 16), (10, 12)):
        mean = x[:, :, y1:y2, x1:x2].mean(dim=(2, 3), keepdim=True)
        total[:, :, y1:y2, x1:x2] += head.conv_seg(mean)
        count[:, :, y1:y2, x1:x2] += 1
    torch.testing.assert_close(got, total / count)
    assert not torch.allclose(got, model.whole_inference(x, [dict(img_shape=(37, 45))]))


def test_slide_predict_returns_ori_shape():
    model = _slide(_pixel_model(), (8, 8), (6, 6))
    x = torch.randn(1, 3, 20, 22)
    pred = model.predict(x, [DataSample(metainfo=dict(ori_shape=(40, 44), img_shape=(20, 22)))])
    assert pred[0].pred_sem_seg.data.shape == (1, 40, 44)


# ----------------------------------------------------------------------------- errors
def test_bad_test_cfg_is_reported():
    with pytest.raises(ValueError, match="slide.*whole"):
        _pixel_model(test_cfg=dict(mode="sliding"))
    with pytest.raises(KeyError, match="crop_size"):
        _pixel_model(test_cfg=dict(mode="slide", stride=(4, 4)))


def test_encoder_decoder_rejects_a_list_of_decode_heads():
    head = _pspnet_cfg()["decode_head"]
    with pytest.raises(TypeError, match="CascadeEncoderDecoder"):
        with torch.device("meta"):
            MODELS.build(_pspnet_cfg(decode_head=[head, head]))


def test_pretrained_goes_to_the_backbone():
    cfg = _pspnet_cfg(aux=False, pretrained="open-mmlab://resnet50_v1c")
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = MODELS.build(cfg)
    assert model.backbone.init_cfg == dict(
        type="Pretrained", checkpoint="open-mmlab://resnet50_v1c"
    )


# ----------------------------------------------------------------------------- cascade
def _pointrend_cfg(num_classes=3):
    return dict(
        type="CascadeEncoderDecoder",
        num_stages=2,
        data_preprocessor=dict(type="BaseDataPreprocessor"),
        backbone=dict(
            type="ResNetV1c", depth=18, num_stages=4, out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 1, 1), strides=(1, 2, 2, 2), norm_cfg=SYNC_BN,
            contract_dilation=True,
        ),
        neck=dict(type="FPN", in_channels=[64, 128, 256, 512], out_channels=16, num_outs=4),
        decode_head=[
            dict(
                type="FPNHead", in_channels=[16, 16, 16, 16], in_index=[0, 1, 2, 3],
                feature_strides=[4, 8, 16, 32], channels=8, dropout_ratio=-1,
                num_classes=num_classes, norm_cfg=SYNC_BN, align_corners=False,
            ),
            dict(
                type="PointHead", in_channels=[16], in_index=[0], channels=16, num_fcs=3,
                coarse_pred_each_layer=True, dropout_ratio=-1, num_classes=num_classes,
                align_corners=False,
            ),
        ],
        train_cfg=dict(num_points=64, oversample_ratio=3, importance_sample_ratio=0.75),
        test_cfg=dict(mode="whole", subdivision_steps=2, subdivision_num_points=100, scale_factor=2),
    )  # fmt: skip


def test_pointrend_keys_losses_and_predict():
    torch.manual_seed(0)
    model = MODELS.build(_pointrend_cfg())
    model.init_weights()
    keys = model.state_dict().keys()
    assert "decode_head.0.scale_heads.3.4.conv.weight" in keys
    assert "decode_head.1.fcs.0.conv.weight" in keys and "decode_head.1.fc_seg.weight" in keys
    assert not any(k.startswith("decode_head.1.conv_seg") for k in keys)
    assert "neck.lateral_convs.0.conv.weight" in keys

    x = torch.randn(2, 3, 64, 64)
    losses = model(x, _samples(2, (64, 64), num_classes=3), mode="loss")
    assert set(losses) == {"decode_0.loss_ce", "decode_0.acc_seg", "decode_1.pointloss_ce",
                           "decode_1.acc_point"}  # fmt: skip
    (losses["decode_0.loss_ce"] + losses["decode_1.pointloss_ce"]).backward()
    assert model.decode_head[1].fc_seg.weight.grad is not None

    model.eval()
    metas = [DataSample(metainfo=dict(ori_shape=(50, 60), img_shape=(64, 64))) for _ in range(2)]
    preds = model(x, metas, mode="predict")
    assert preds[0].seg_logits.data.shape == (3, 50, 60)
    assert preds[0].pred_sem_seg.data.shape == (1, 50, 60)
    # tensor mode: FPNHead logits at stride 4 (16x16), refined twice by 2x subdivision
    assert model(x, mode="tensor").shape == (2, 3, 64, 64)


def test_pointrend_refines_only_the_most_uncertain_cells():
    torch.manual_seed(0)
    model = MODELS.build(_pointrend_cfg()).eval()
    x = torch.randn(1, 3, 64, 64)
    feats = model.extract_feat(x)
    coarse = model.decode_head[0].forward(feats)
    cfg = dict(subdivision_steps=1, subdivision_num_points=10, scale_factor=2)
    refined = model.decode_head[1].forward_tensor(feats, coarse, cfg)
    upsampled = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
    changed = (refined != upsampled).any(dim=1)
    assert refined.shape == upsampled.shape and 0 < int(changed.sum()) <= 10


def test_cascade_needs_num_stages_heads():
    cfg = _pointrend_cfg()
    cfg["num_stages"] = 3
    with pytest.raises(ValueError, match="num_stages=3"):
        with torch.device("meta"):
            MODELS.build(cfg)
