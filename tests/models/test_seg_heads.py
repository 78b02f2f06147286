"""Decode heads (FCN, PSP, ASPP, DepthwiseSeparableASPP, FPN, Point), BaseDecodeHead rules,
accuracy, point sampling and the OHEM pixel sampler."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from vistra.data.errors import DataError
from vistra.data.structures import DataSample, PixelData
from vistra.models.utils.seg_utils import (
    OHEMPixelSampler,
    accuracy,
    add_prefix,
    calculate_uncertainty,
    point_sample,
    resize,
    sample_points_test,
    sample_points_train,
)
from vistra.registry import MODELS, RegistryError

BN = dict(type="BN")


def _build(**cfg):
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def _samples(n, size, num_classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        DataSample(gt_sem_seg=PixelData(torch.randint(0, num_classes, (1, *size), generator=g)))
        for _ in range(n)
    ]


def _pyramid(n=2, channels=(4, 8, 16, 32), size=32):
    torch.manual_seed(0)
    return [torch.randn(n, c, size // 2**i, size // 2**i) for i, c in enumerate(channels)]


# ----------------------------------------------------------------------------- shapes & keys
@pytest.mark.parametrize(
    "cfg",
    [
        dict(type="FCNHead", in_channels=32, in_index=3, channels=8),
        dict(type="FCNHead", in_channels=32, in_index=3, channels=8, num_convs=1,
             concat_input=False, dilation=2),
        dict(type="PSPHead", in_channels=32, in_index=3, channels=8, pool_scales=(1, 2, 3, 6)),
        dict(type="ASPPHead", in_channels=32, in_index=3, channels=8, dilations=(1, 2, 3)),
        dict(type="DepthwiseSeparableASPPHead", in_channels=32, in_index=3, channels=8,
             dilations=(1, 2, 3), c1_in_channels=4, c1_channels=2),
    ],
    ids=["fcn", "fcn-dilated", "psp", "aspp", "sep-aspp"],
)  # fmt: skip
def test_single_input_heads_forward_shape(cfg):
    head = _build(num_classes=5, norm_cfg=BN, **cfg)
    out = head(_pyramid())
    # DeepLabV3+ decodes at the resolution of the first (c1) feature map
    expected = (2, 5, 32, 32) if cfg["type"] == "DepthwiseSeparableASPPHead" else (2, 5, 4, 4)
    assert out.shape == expected


def test_mmseg_key_names_of_the_heads():
    fcn = _build(type="FCNHead", in_channels=32, channels=8, num_classes=5, norm_cfg=BN)
    assert {"convs.0.conv.weight", "convs.1.bn.running_var", "conv_cat.conv.weight",
            "conv_seg.weight", "conv_seg.bias"} <= set(fcn.state_dict())  # fmt: skip
    psp = _build(type="PSPHead", in_channels=32, channels=8, num_classes=5, norm_cfg=BN)
    assert {"psp_modules.3.1.conv.weight", "psp_modules.0.1.bn.weight",
            "bottleneck.conv.weight"} <= set(psp.state_dict())  # fmt: skip
    assert psp.state_dict()["bottleneck.conv.weight"].shape == (8, 32 + 4 * 8, 3, 3)
    aspp = _build(type="ASPPHead", in_channels=32, channels=8, num_classes=5, norm_cfg=BN)
    assert {"image_pool.1.conv.weight", "aspp_modules.3.conv.weight",
            "bottleneck.bn.weight"} <= set(aspp.state_dict())  # fmt: skip
    assert aspp.aspp_modules[0].conv.kernel_size == (1, 1)
    assert aspp.aspp_modules[3].conv.dilation == (18, 18)


def test_separable_aspp_keys_and_depthwise_groups():
    head = _build(
        type="DepthwiseSeparableASPPHead", in_channels=32, in_index=3, channels=8,
        dilations=(1, 12, 24, 36), c1_in_channels=4, c1_channels=2, num_classes=5, norm_cfg=BN,
    )  # fmt: skip
    keys = set(head.state_dict())
    assert "aspp_modules.0.conv.weight" in keys  # dilation 1 stays a plain ConvModule
    assert {"aspp_modules.1.depthwise_conv.conv.weight", "aspp_modules.1.pointwise_conv.bn.weight",
            "c1_bottleneck.conv.weight", "sep_bottleneck.0.depthwise_conv.conv.weight",
            "sep_bottleneck.1.pointwise_conv.conv.weight", "image_pool.1.conv.weight"} <= keys  # fmt: skip
    dw = head.aspp_modules[2].depthwise_conv.conv
    assert dw.groups == 32 and dw.dilation == (24, 24)
    assert head.sep_bottleneck[0].depthwise_conv.conv.in_channels == 8 + 2


def test_separable_aspp_without_c1_branch():
    head = _build(
        type="DepthwiseSeparableASPPHead", in_channels=32, in_index=3, channels=8,
        dilations=(1, 2), c1_in_channels=0, c1_channels=0, num_classes=5,
    )  # fmt: skip
    assert head.c1_bottleneck is None
    assert head(_pyramid()).shape == (2, 5, 4, 4)


def test_fpn_head_scale_heads_and_shape():
    head = _build(
        type="FPNHead", in_channels=[8, 8, 8, 8], in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32], channels=6, dropout_ratio=-1, num_classes=3, norm_cfg=BN,
    )  # fmt: skip
    assert [len(s) for s in head.scale_heads] == [1, 2, 4, 6]  # conv (+ upsample) per 2x step
    assert "scale_heads.3.4.conv.weight" in head.state_dict()
    assert head.dropout is None
    feats = _pyramid(channels=(8, 8, 8, 8))
    assert head(feats).shape == (2, 3, 32, 32)


def test_fpn_head_rejects_unsorted_strides():
    with pytest.raises(ValueError, match="smallest"):
        _build(type="FPNHead", in_channels=[8, 8], in_index=[0, 1], feature_strides=[8, 4],
               channels=4, num_classes=3)  # fmt: skip


def test_fcn_head_without_convs_needs_matching_channels():
    with pytest.raises(ValueError, match="in_channels == channels"):
        _build(type="FCNHead", in_channels=32, channels=8, num_convs=0, num_classes=3)
    head = _build(type="FCNHead", in_channels=8, channels=8, num_convs=0, concat_input=False,
                  in_index=1, num_classes=3, dropout_ratio=0)  # fmt: skip
    x = _pyramid()
    torch.testing.assert_close(head(x), head.conv_seg(x[1]))


# ----------------------------------------------------------------------------- inputs
def test_resize_concat_and_multiple_select():
    feats = _pyramid()
    head = _build(type="FCNHead", in_channels=[4, 8, 16], in_index=[0, 1, 2], channels=8,
                  input_transform="resize_concat", num_classes=3)  # fmt: skip
    assert head.in_channels == 28
    assert head._transform_inputs(feats).shape == (2, 28, 32, 32)
    assert head(feats).shape == (2, 3, 32, 32)
    head = _build(type="FPNHead", in_channels=[8, 16], in_index=[1, 2], feature_strides=[8, 16],
                  channels=4, num_classes=3)  # fmt: skip
    picked = head._transform_inputs(feats)
    assert [tuple(t.shape) for t in picked] == [(2, 8, 16, 16), (2, 16, 8, 8)]


def test_input_argument_errors():
    with pytest.raises(ValueError, match="input_transform must be one of"):
        _build(type="FCNHead", in_channels=8, channels=8, num_classes=3, input_transform="concat")
    with pytest.raises(TypeError, match="must be ints"):
        _build(type="FCNHead", in_channels=[8, 8], in_index=[0, 1], channels=8, num_classes=3)
    with pytest.raises(ValueError, match="same length"):
        _build(type="FCNHead", in_channels=[8, 8], in_index=[0], channels=8, num_classes=3,
               input_transform="multiple_select")  # fmt: skip


def test_unknown_head_argument_names_the_closest():
    # the registry checks arguments along the constructor chain, before building
    with pytest.raises(RegistryError, match="did you mean 'pool_scales'"):
        _build(type="PSPHead", in_channels=8, channels=8, num_classes=3, pool_scale=(1, 2))
    with pytest.raises(RegistryError, match="did you mean 'dropout_ratio'"):
        _build(type="FCNHead", in_channels=8, channels=8, num_classes=3, drop_ratio=0.1)


def test_binary_settings():
    with pytest.warns(UserWarning, match="defaults to 0.3"):
        head = _build(type="FCNHead", in_channels=8, channels=8, num_classes=2, out_channels=1,
                      loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=True))  # fmt: skip
    assert head.threshold == 0.3 and head.conv_seg.out_channels == 1
    with pytest.raises(ValueError, match="out_channels should be equal to num_classes"):
        _build(type="FCNHead", in_channels=8, channels=8, num_classes=5, out_channels=3)


def test_conv_seg_is_initialised_normal_001():
    torch.manual_seed(0)
    head = _build(type="PSPHead", in_channels=64, channels=256, num_classes=150)
    assert 0.008 < float(head.conv_seg.weight.detach().std()) < 0.012
    assert float(head.conv_seg.bias.detach().abs().max()) == 0


# ----------------------------------------------------------------------------- losses
def test_loss_resizes_logits_to_the_labels_and_reports_acc_seg():
    head = _build(type="FCNHead", in_channels=32, in_index=3, channels=8, num_classes=4,
                  dropout_ratio=0)  # fmt: skip
    feats, samples = _pyramid(), _samples(2, (32, 32))
    losses = head.loss(feats, samples, train_cfg=None)
    assert set(losses) == {"loss_ce", "acc_seg"}
    logits = F.interpolate(head(feats), (32, 32), mode="bilinear", align_corners=False)
    labels = torch.cat([s.gt_sem_seg.data for s in samples]).long()
    torch.testing.assert_close(losses["loss_ce"], F.cross_entropy(logits, labels))
    expected_acc = (logits.argmax(1) == labels).float().mean() * 100
    torch.testing.assert_close(losses["acc_seg"], expected_acc.reshape(1), atol=1e-3, rtol=0)


def test_several_losses_by_name_and_same_names_summed():
    cfg = dict(
        type="FCNHead", in_channels=32, in_index=3, channels=8, num_classes=4, dropout_ratio=0
    )
    torch.manual_seed(0)
    single = _build(**cfg)
    twice = _build(**cfg, loss_decode=[
        dict(type="CrossEntropyLoss", loss_weight=1.0),
        dict(type="CrossEntropyLoss", loss_weight=0.5),
        dict(type="DiceLoss", loss_name="loss_dice"),
    ])  # fmt: skip
    twice.load_state_dict(single.state_dict())
    feats, samples = _pyramid(), _samples(2, (32, 32))
    one = single.loss(feats, samples, None)
    both = twice.loss(feats, samples, None)
    assert set(both) == {"loss_ce", "loss_dice", "acc_seg"}
    torch.testing.assert_close(both["loss_ce"], 1.5 * one["loss_ce"])


def test_ignore_index_is_ignored_by_loss_and_accuracy():
    head = _build(type="FCNHead", in_channels=32, in_index=3, channels=8, num_classes=4,
                  dropout_ratio=0, ignore_index=3)  # fmt: skip
    feats = _pyramid()
    samples = _samples(2, (32, 32))
    for s in samples:  # label 3 everywhere in the left half
        s.gt_sem_seg.data[:, :, :16] = 3
    losses = head.loss(feats, samples, None)
    logits = F.interpolate(head(feats), (32, 32), mode="bilinear", align_corners=False)
    labels = torch.cat([s.gt_sem_seg.data for s in samples]).long()
    keep = labels != 3
    expected_acc = (logits.argmax(1)[keep] == labels[keep]).float().mean() * 100
    torch.testing.assert_close(losses["acc_seg"], expected_acc.reshape(1), atol=1e-3, rtol=0)
    # MMSeg averages over all pixels (avg_non_ignore=False); ignored ones contribute 0
    ce = F.cross_entropy(logits, labels, ignore_index=3, reduction="sum") / labels.numel()
    torch.testing.assert_close(losses["loss_ce"], ce)


def test_missing_gt_sem_seg_is_reported():
    head = _build(type="FCNHead", in_channels=32, in_index=3, channels=8, num_classes=4)
    with pytest.raises(KeyError, match="gt_sem_seg"):
        head.loss(_pyramid(), [DataSample(), DataSample()], None)


def _fcn4():
    return _build(type="FCNHead", in_channels=32, in_index=3, channels=8, num_classes=4)


def test_label_out_of_range_names_the_mask_values_and_valid_range():
    samples = _samples(3, (32, 32))
    for i, s in enumerate(samples):
        s.set_metainfo(dict(seg_map_path=f"ann/{i}.png", img_path=f"img/{i}.png"))
        s.gt_sem_seg.data[0, 0, :3] = 255  # padding / ignored pixels are fine
    samples[1].gt_sem_seg.data[0, 5, 5] = 4
    samples[1].gt_sem_seg.data[0, 6, 6] = 7
    samples[2].gt_sem_seg.data[0, 5, 5] = 9
    with pytest.raises(DataError) as err:  # was PyTorch's "IndexError: Target 4 is out of bounds"
        _fcn4().loss(_pyramid(3), samples, None)
    msg = str(err.value)
    assert "mask 'ann/1.png' holds label value(s) 4, 7 (and 1 more mask(s) in this batch)" in msg
    assert "class indices 0..3 (num_classes=4) and ignore_index=255" in msg
    assert "reduce_zero_label=True" in msg and "colour" in msg


def test_label_check_without_paths_and_point_head():
    samples = _samples(2, (32, 32))
    samples[0].gt_sem_seg.data[0, 0, 0] = -1
    with pytest.raises(DataError, match="mask of sample 7 holds label value"):
        samples[0].set_metainfo(dict(sample_idx=7))
        _fcn4().loss(_pyramid(), samples, None)
    samples = _samples(2, (64, 64), num_classes=3)
    samples[1].gt_sem_seg.data[:] = 3  # every pixel, so that the sampled points hit it
    samples[1].set_metainfo(dict(img_path="img/b.jpg"))
    train_cfg = dict(num_points=32, oversample_ratio=3, importance_sample_ratio=0.75)
    with pytest.raises(DataError, match=r"mask of image 'img/b.jpg' holds label value\(s\) 3,"):
        _point_head().loss(
            [torch.randn(2, 8, 16, 16)], torch.randn(2, 3, 16, 16), samples, train_cfg
        )


def test_multi_channel_label_map_names_the_mask():
    samples = _samples(2, (32, 32))
    samples[1] = DataSample(
        gt_sem_seg=PixelData(torch.zeros(3, 32, 32, dtype=torch.long)),
        metainfo=dict(seg_map_path="ann/colour.png"),
    )
    with pytest.raises(DataError, match=r"mask 'ann/colour.png' .* shape \(3, 32, 32\)"):
        _fcn4().loss(_pyramid(), samples, None)


def test_predict_by_feat_resizes_to_pad_shape_or_crop():
    head = _build(type="FCNHead", in_channels=32, in_index=3, channels=8, num_classes=4)
    logits = torch.randn(1, 4, 4, 4)
    assert head.predict_by_feat(logits, [dict(img_shape=(20, 24))]).shape == (1, 4, 20, 24)
    meta = dict(img_shape=(20, 24), pad_shape=(32, 32))
    assert head.predict_by_feat(logits, [meta]).shape == (1, 4, 32, 32)
    crop = dict(img_shape=torch.Size([16, 8]), pad_shape=(32, 32))  # slide inference crop
    assert head.predict_by_feat(logits, [crop]).shape == (1, 4, 16, 8)


# ----------------------------------------------------------------------------- utils
def test_accuracy_known_values():
    pred = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]], [[1.0, 3.0], [5.0, 0.0]]]])  # (1, 2, 2, 2)
    target = torch.tensor([[[0, 1], [0, 255]]])
    # argmax: [[0, 1], [1, 0]] -> right, right, wrong, (ignored)
    torch.testing.assert_close(accuracy(pred, target, ignore_index=255), torch.tensor([200 / 3]))
    torch.testing.assert_close(accuracy(pred, target), torch.tensor([50.0]))
    top1, top2 = accuracy(pred, target, topk=(1, 2), ignore_index=255)
    torch.testing.assert_close(top2, torch.tensor([100.0]))
    all_ignored = accuracy(pred, torch.full((1, 2, 2), 255), ignore_index=255)
    torch.testing.assert_close(all_ignored, torch.tensor([100.0]))  # eps / eps, not NaN


def test_add_prefix_and_resize_warning():
    assert add_prefix({"loss_ce": 1, "acc_seg": 2}, "aux_0") == {
        "aux_0.loss_ce": 1,
        "aux_0.acc_seg": 2,
    }
    with pytest.warns(UserWarning, match="align_corners"):
        resize(torch.zeros(1, 1, 4, 4), (9, 9), mode="bilinear", align_corners=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resize(torch.zeros(1, 1, 4, 4), (7, 7), mode="bilinear", align_corners=True)  # 3n+1


def test_point_sample_is_bilinear_interpolation_at_known_points():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    points = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5], [0.5, 0.25]]])
    got = point_sample(x, points)
    torch.testing.assert_close(got, torch.tensor([[[0.0, 1.0, 2.0, 1.5, 0.5]]]))
    corners = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]])
    torch.testing.assert_close(point_sample(x, corners, align_corners=True),
                               torch.tensor([[[0.0, 3.0, 1.0]]]))  # fmt: skip
    nearest = point_sample(x, torch.tensor([[[0.6, 0.4]]]), mode="nearest")
    torch.testing.assert_close(nearest, torch.tensor([[[1.0]]]))


def test_point_sample_on_a_grid_equals_f_interpolate():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7)
    h, w = 10, 14
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    grid = torch.stack([xs, ys], dim=-1).expand(2, h, w, 2)
    got = point_sample(x, grid, padding_mode="border")
    torch.testing.assert_close(got, F.interpolate(x, (h, w), mode="bilinear", align_corners=False))


def test_uncertainty_is_minus_the_top2_gap():
    logits = torch.tensor([[[[3.0]], [[1.0]], [[2.5]]]])
    torch.testing.assert_close(calculate_uncertainty(logits), torch.tensor([[[[-0.5]]]]))


def test_train_points_prefer_uncertain_regions():
    logits = torch.zeros(2, 2, 8, 8)
    logits[:, 0, :, 4:] = 10.0  # right half certain, left half a tie
    torch.manual_seed(0)
    points = sample_points_train(logits, num_points=40, oversample_ratio=3,
                                 importance_sample_ratio=1.0)  # fmt: skip
    assert points.shape == (2, 40, 2)
    assert float(points[..., 0].max()) < 0.6  # all from the uncertain half (and the blend)
    mixed = sample_points_train(logits, num_points=40, oversample_ratio=3,
                                importance_sample_ratio=0.5)  # fmt: skip
    assert mixed.shape == (2, 40, 2) and 0 <= float(mixed.min()) and float(mixed.max()) <= 1
    with pytest.raises(ValueError, match="oversample_ratio"):
        sample_points_train(logits, 10, 0.5, 0.5)


def test_test_points_are_the_most_uncertain_cell_centres():
    logits = torch.zeros(1, 2, 4, 5)
    logits[:, 0] = 5.0
    logits[0, 0, 1, 3] = 0.0  # tie: most uncertain
    logits[0, 0, 2, 0] = 1.0  # second
    indices, points = sample_points_test(logits, num_points=2)
    assert indices.tolist() == [[1 * 5 + 3, 2 * 5 + 0]]
    torch.testing.assert_close(points, torch.tensor([[[3.5 / 5, 1.5 / 4], [0.5 / 5, 2.5 / 4]]]))
    assert sample_points_test(logits, num_points=100)[0].shape == (1, 20)  # capped at H*W


# ----------------------------------------------------------------------------- PointHead
def _point_head(**extra):
    torch.manual_seed(0)
    cfg = dict(
        type="PointHead",
        in_channels=[8],
        in_index=[0],
        channels=16,
        num_fcs=3,
        coarse_pred_each_layer=True,
        dropout_ratio=-1,
        num_classes=3,
        align_corners=False,
    )
    cfg.update(extra)  # fmt: skip
    return _build(**cfg)


def test_point_head_keys_and_forward_shape():
    head = _point_head()
    keys = set(head.state_dict())
    assert {"fcs.0.conv.weight", "fcs.2.conv.bias", "fc_seg.weight"} <= keys
    assert not any(k.startswith("conv_seg") for k in keys)
    assert head.fcs[0].conv.in_channels == 8 + 3 and head.fcs[1].conv.in_channels == 16 + 3
    assert head(torch.randn(2, 8, 50), torch.randn(2, 3, 50)).shape == (2, 3, 50)
    assert 0.008 < float(head.fc_seg.weight.detach().std()) < 0.012  # Normal(0.01) on fc_seg


def test_point_head_loss_and_test_refinement():
    head = _point_head()
    feats = [torch.randn(2, 8, 16, 16)]
    coarse = torch.randn(2, 3, 16, 16)
    train_cfg = dict(num_points=32, oversample_ratio=3, importance_sample_ratio=0.75)
    losses = head.loss(feats, coarse, _samples(2, (64, 64), num_classes=3), train_cfg)
    assert set(losses) == {"pointloss_ce", "acc_point"}
    test_cfg = dict(subdivision_steps=2, subdivision_num_points=50, scale_factor=2)
    out = head.predict(feats, coarse, [dict(img_shape=(64, 64))], test_cfg)
    assert out.shape == (2, 3, 64, 64)
    with pytest.raises(KeyError, match="num_points"):
        head.loss(feats, coarse, _samples(2, (64, 64), num_classes=3), dict(oversample_ratio=3))


# ----------------------------------------------------------------------------- OHEM
class _Context(torch.nn.Module):
    def __init__(self, ignore_index=255):
        super().__init__()
        self.ignore_index = ignore_index
        self.loss_decode = MODELS.build(dict(type="CrossEntropyLoss"))


def _ohem_inputs():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    labels = torch.randint(0, 4, (2, 1, 8, 8))
    labels[:, :, :2] = 255  # 16 ignored pixels per image
    return logits, labels


def test_ohem_without_thresh_keeps_the_hardest_min_kept_pixels():
    logits, labels = _ohem_inputs()
    weight = OHEMPixelSampler(_Context(), min_kept=10).sample(logits, labels)
    assert weight.shape == (2, 8, 8)
    assert int(weight.sum()) == 20  # min_kept per image
    assert float(weight[:, :2].abs().sum()) == 0  # ignored pixels
    losses = F.cross_entropy(logits, labels.squeeze(1), ignore_index=255, reduction="none")
    kept, dropped = losses[weight == 1], losses[(weight == 0) & (labels.squeeze(1) != 255)]
    assert float(kept.min()) >= float(dropped.max())


def test_ohem_with_thresh_keeps_at_least_min_kept_and_all_below_thresh():
    logits, labels = _ohem_inputs()
    label = labels.squeeze(1)
    valid = label != 255
    prob = F.softmax(logits, 1).gather(1, label.clamp(max=3).unsqueeze(1)).squeeze(1)
    loose = OHEMPixelSampler(_Context(), thresh=0.9, min_kept=5).sample(logits, labels)
    assert torch.equal(loose.bool(), valid & (prob < 0.9))
    strict = OHEMPixelSampler(_Context(), thresh=0.01, min_kept=20).sample(logits, labels)
    assert int(strict.sum()) >= 40 and float(strict[~valid].abs().sum()) == 0


def test_ohem_through_a_decode_head_changes_the_loss():
    cfg = dict(
        type="FCNHead", in_channels=32, in_index=3, channels=8, num_classes=4, dropout_ratio=0
    )
    torch.manual_seed(0)
    plain = _build(**cfg)
    ohem = _build(**cfg, sampler=dict(type="OHEMPixelSampler", thresh=0.1, min_kept=100))
    ohem.load_state_dict(plain.state_dict())
    assert isinstance(ohem.sampler, OHEMPixelSampler) and ohem.sampler.context is ohem
    feats, samples = _pyramid(), _samples(2, (32, 32))
    a, b = plain.loss(feats, samples, None), ohem.loss(feats, samples, None)
    assert float(b["loss_ce"].detach()) != pytest.approx(float(a["loss_ce"].detach()))
    with pytest.raises(ValueError, match="min_kept"):
        _build(**cfg, sampler=dict(type="OHEMPixelSampler", min_kept=1))
