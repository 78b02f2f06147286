"""UPerHead, EncHead (+ Encoding), the JPU neck, PSAHead (+ the PSA mask op against a
per-pixel reference of MMCV's kernel) and MMSegmentation's ResNeSt: tiny builds, shapes,
a train step, key names and bad-argument errors."""

import pytest
import torch

from vistra.data.structures import DataSample, PixelData
from vistra.models.layers.encoding import Encoding
from vistra.models.layers.psa_mask import psa_mask
from vistra.registry import MODELS, RegistryError

BN = dict(type="BN")


def _build(**cfg):
    module = MODELS.build(cfg)
    module.init_weights()
    return module


def _samples(n, size, num_classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = [torch.randint(0, num_classes, (1, *size), generator=g) for _ in range(n)]
    labels[0][0, 0, :3] = 255  # some ignored pixels
    return [DataSample(gt_sem_seg=PixelData(t)) for t in labels]


def _pyramid(n=2, channels=(4, 8, 16, 32), size=16):
    torch.manual_seed(0)
    return [torch.randn(n, c, size // 2**i, size // 2**i) for i, c in enumerate(channels)]


def _train_step(head, feats, size):
    losses = head.loss(feats, _samples(feats[0].shape[0], size), None)
    total = sum(v for k, v in losses.items() if k.startswith("loss"))
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
    return losses


# ----------------------------------------------------------------------------- UPerHead
def test_uper_head_shapes_keys_and_train_step():
    head = _build(type="UPerHead", in_channels=[4, 8, 16, 32], in_index=[0, 1, 2, 3],
                  channels=8, num_classes=5, norm_cfg=BN, pool_scales=(1, 2))  # fmt: skip
    feats = _pyramid()
    assert head(feats).shape == (2, 5, 16, 16)
    keys = set(head.state_dict())
    assert {"psp_modules.1.1.conv.weight", "bottleneck.conv.weight", "lateral_convs.2.bn.weight",
            "fpn_convs.0.conv.weight", "fpn_bottleneck.conv.weight"} <= keys  # fmt: skip
    assert "lateral_convs.3.conv.weight" not in keys  # the top level has the PPM instead
    assert head.fpn_bottleneck.conv.in_channels == 4 * 8
    assert set(_train_step(head, feats, (32, 32))) == {"loss_ce", "acc_seg"}


def test_uper_head_rejects_bad_pool_scales():
    with pytest.raises((TypeError, RegistryError), match="pool_scales"):
        MODELS.build(dict(type="UPerHead", in_channels=[4, 8], in_index=[0, 1], channels=8,
                          num_classes=5, pool_scales=3))  # fmt: skip


# ----------------------------------------------------------------------------- EncHead
def test_encoding_layer_matches_its_definition():
    torch.manual_seed(0)
    enc = Encoding(channels=3, num_codes=4)
    x = torch.randn(2, 3, 2, 5)
    out = enc(x)
    assert out.shape == (2, 4, 3)
    pix = x.flatten(2).transpose(1, 2)  # (N, HW, C)
    res = pix[:, :, None] - enc.codewords[None, None]
    w = torch.softmax(enc.scale * (res**2).sum(-1), dim=2)
    torch.testing.assert_close(out, (w[..., None] * res).sum(1))
    assert -1 <= enc.scale.min() and enc.scale.max() <= 0  # upstream's init


def test_enc_head_se_loss_and_predict():
    head = _build(type="EncHead", in_channels=[8, 16, 32], in_index=(1, 2, 3), channels=8,
                  num_codes=4, num_classes=5, norm_cfg=BN, add_lateral=True)  # fmt: skip
    feats = _pyramid()
    seg, se = head(feats)
    assert seg.shape == (2, 5, 2, 2) and se.shape == (2, 5)
    keys = set(head.state_dict())
    assert {"enc_module.encoding.0.codewords", "enc_module.encoding.0.scale",
            "enc_module.encoding.1.running_mean", "enc_module.encoding_project.conv.weight",
            "enc_module.fc.0.weight", "se_layer.weight", "lateral_convs.1.conv.weight",
            "fusion.conv.weight"} <= keys  # fmt: skip
    losses = _train_step(head, feats, (16, 16))
    assert set(losses) == {"loss_ce", "loss_se", "acc_seg"}
    meta = dict(img_shape=(16, 16), pad_shape=(16, 16))
    assert head.predict(feats, [meta, meta], None).shape == (2, 5, 16, 16)


def test_enc_head_class_presence_labels():
    labels = torch.tensor([[[[0, 2], [255, 2]]], [[[4, 4], [4, 1]]]])
    onehot = MODELS.get("EncHead")._convert_to_onehot_labels(labels, 5)
    assert onehot.tolist() == [[1, 0, 1, 0, 0], [0, 1, 0, 0, 1]]


def test_enc_head_without_se_loss_returns_logits():
    head = _build(type="EncHead", in_channels=[32], in_index=[3], channels=8, num_codes=4,
                  num_classes=5, use_se_loss=False)  # fmt: skip
    assert not hasattr(head, "se_layer")
    assert head(_pyramid()).shape == (2, 5, 2, 2)
    assert set(_train_step(head, _pyramid(), (16, 16))) == {"loss_ce", "acc_seg"}


def test_enc_head_rejects_bad_num_codes():
    with pytest.raises((ValueError, RegistryError), match="num_codes"):
        MODELS.build(dict(type="EncHead", in_channels=[32], in_index=[3], channels=8,
                          num_classes=5, num_codes=0))  # fmt: skip


# ----------------------------------------------------------------------------- JPU
def test_jpu_neck_outputs_and_keys():
    neck = _build(type="JPU", in_channels=(8, 16, 32), mid_channels=4, dilations=(1, 2))
    feats = _pyramid()[1:]
    outs = neck(feats)
    assert len(outs) == 3 and outs[0] is feats[0] and outs[1] is feats[1]
    assert outs[2].shape == (2, 2 * 4, 8, 8)
    assert {"conv_layers.2.0.conv.weight", "conv_layers.0.0.bn.weight",
            "dilation_layers.1.0.depthwise_conv.conv.weight",
            "dilation_layers.1.0.depthwise_conv.bn.weight",
            "dilation_layers.0.0.pointwise_conv.bn.weight"} <= set(neck.state_dict())  # fmt: skip
    assert neck.dilation_layers[1][0].depthwise_conv.conv.dilation == (2, 2)
    with pytest.raises(ValueError, match="inputs"):
        neck(feats[:2])
    with pytest.raises((ValueError, RegistryError), match="end_level"):
        MODELS.build(dict(type="JPU", in_channels=(8, 16), end_level=3))


# ----------------------------------------------------------------------------- PSA
def _psa_reference(x, psa_type, h_mask, w_mask):
    """Per-pixel transcription of MMCV's CPU psamask forward kernel."""
    n, _, h, w = x.shape
    half_h, half_w = (h_mask - 1) // 2, (w_mask - 1) // 2
    out = torch.zeros(n, h * w, h, w)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for hi in range(max(0, half_h - i), min(h_mask, h + half_h - i)):
                    for wi in range(max(0, half_w - j), min(w_mask, w + half_w - j)):
                        qh, qw = hi + i - half_h, wi + j - half_w
                        value = x[b, hi * w_mask + wi, i, j]
                        if psa_type == "collect":
                            out[b, qh * w + qw, i, j] = value
                        else:
                            out[b, i * w + j, qh, qw] = value
    return out


@pytest.mark.parametrize("psa_type", ["collect", "distribute"])
@pytest.mark.parametrize("size", [(3, 4, 5, 7), (4, 3, 3, 3), (2, 3, 4, 6)])
def test_psa_mask_matches_the_per_pixel_kernel(psa_type, size):
    h, w, h_mask, w_mask = size
    x = torch.randn(2, h_mask * w_mask, h, w)
    torch.testing.assert_close(
        psa_mask(x, psa_type, (h_mask, w_mask)), _psa_reference(x, psa_type, h_mask, w_mask),
        rtol=0, atol=0,
    )  # fmt: skip


def test_psa_mask_collect_and_distribute_are_transposes():
    x = torch.randn(1, 5 * 7, 3, 4)
    col = psa_mask(x, "collect", (5, 7)).view(1, 12, 12)
    dis = psa_mask(x, "distribute", (5, 7)).view(1, 12, 12)
    torch.testing.assert_close(col, dis.transpose(1, 2))
    with pytest.raises(ValueError, match="psa_type"):
        psa_mask(x, "both", (5, 7))
    with pytest.raises(ValueError, match="channels"):
        psa_mask(x, "collect", (3, 3))


@pytest.mark.parametrize(
    "extra",
    [
        dict(),
        dict(psa_type="collect", shrink_factor=1, psa_softmax=False),
        dict(psa_type="distribute", normalization_factor=None),
        dict(psa_type="collect", compact=True, mask_size=(2, 2)),
        dict(compact=True, mask_size=(2, 2)),
    ],
    ids=["bi-direction", "collect", "distribute", "compact-collect", "compact-bi"],
)
def test_psa_head_variants_forward_and_train(extra):
    cfg = dict(type="PSAHead", in_channels=32, in_index=3, channels=8, num_classes=5,
               norm_cfg=BN, mask_size=(3, 3))  # fmt: skip
    head = _build(**{**cfg, **extra})
    feats = _pyramid(size=32)  # the last map is 4x4, 2x2 after the 2x shrink
    assert head(feats).shape == (2, 5, 4, 4)
    keys = set(head.state_dict())
    assert {"reduce.conv.weight", "attention.0.conv.weight", "attention.1.weight",
            "proj.conv.weight", "bottleneck.conv.weight"} <= keys  # fmt: skip
    assert ("reduce_p.conv.weight" in keys) == (head.psa_type == "bi-direction")
    _train_step(head, feats, (32, 32))


def test_psa_head_rejects_bad_psa_type():
    with pytest.raises((ValueError, RegistryError), match="psa_type"):
        MODELS.build(dict(type="PSAHead", in_channels=32, channels=8, num_classes=5,
                          mask_size=(3, 3), psa_type="both"))  # fmt: skip


# ----------------------------------------------------------------------------- ResNeSt
def _resnest(**kw):
    cfg = dict(type="mmseg.ResNeSt", depth=50, stem_channels=16, base_channels=8)
    return _build(**{**cfg, **kw})


def test_resnest_keys_shapes_and_gradients():
    net = _resnest(num_stages=2, strides=(1, 2), dilations=(1, 1), out_indices=(0, 1))
    keys = set(net.state_dict())
    assert {"stem.0.weight", "stem.7.running_var", "layer1.0.conv2.conv.weight",
            "layer1.0.conv2.bn0.weight", "layer1.0.conv2.fc1.bias", "layer1.0.conv2.bn1.weight",
            "layer1.0.conv2.fc2.weight", "layer2.0.downsample.1.weight",
            "layer1.0.downsample.2.running_mean"} <= keys  # fmt: skip
    assert not any(".bn2." in k for k in keys)
    conv2 = net.layer2[0].conv2
    assert conv2.conv.out_channels == 2 * 16 and conv2.conv.groups == 2
    assert conv2.fc1.out_channels == 32  # max(16 * 2 // 4, 32)
    assert net.layer2[0].avg_down_stride and not net.layer2[1].avg_down_stride
    assert not net.layer1[0].avg_down_stride  # stride 1: no pool
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    outs = net(x)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 4, 4), (2, 64, 2, 2)]
    sum(o.sum() for o in outs).backward()
    assert x.grad is not None


def test_resnest_radix_one_and_groups():
    net = _resnest(radix=1, groups=2, base_width=4, avg_down_stride=False, out_indices=(3,))
    # width floor(planes * base_width / base_channels) * groups = floor(8 * 4 / 8) * 2
    assert net.layer1[0].conv2.conv.out_channels == 8 and net.layer1[0].conv2.conv.groups == 2
    assert not hasattr(net.layer2[0], "avd_layer")
    assert net.eval()(torch.randn(1, 3, 16, 16))[0].shape == (1, 256, 1, 1)


def test_resnest_rejects_bad_arguments():
    with pytest.raises((ValueError, RegistryError), match="radix"):
        _resnest(radix=0)
    with pytest.raises((KeyError, RegistryError), match="depth"):
        _resnest(depth=34)
