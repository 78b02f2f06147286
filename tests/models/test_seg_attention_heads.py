"""Attention and context decode heads on ResNet: APC, CC, DA, DM, DNL, GC, NL, EMA, and
their layers (CrissCrossAttention, ContextBlock, NonLocal2d)."""

import pytest
import torch

from vistra.data.structures import DataSample, PixelData
from vistra.models.layers.cc_attention import CrissCrossAttention
from vistra.models.layers.context_block import ContextBlock
from vistra.models.layers.non_local import NonLocal2d
from vistra.registry import MODELS

BN = dict(type="BN")
COMMON = dict(in_channels=16, in_index=3, channels=16, num_classes=5, norm_cfg=BN)

HEADS = {
    "apc": dict(type="APCHead", pool_scales=(1, 2, 3)),
    "apc-nofusion": dict(type="APCHead", pool_scales=(1, 2), fusion=False),
    "cc": dict(type="CCHead", recurrence=2),
    "da": dict(type="DAHead", pam_channels=8),
    "dm": dict(type="DMHead", filter_sizes=(1, 2, 3)),
    "dm-fusion": dict(type="DMHead", filter_sizes=(3,), fusion=True),
    "dnl": dict(type="DNLHead", reduction=2, use_scale=True, mode="embedded_gaussian"),
    "gc": dict(type="GCHead", ratio=1 / 4.0, pooling_type="att", fusion_types=("channel_add",)),
    "gc-avg-mul": dict(type="GCHead", pooling_type="avg",
                       fusion_types=("channel_add", "channel_mul")),
    "nl": dict(type="NLHead", reduction=2, use_scale=True, mode="embedded_gaussian"),
    "ema": dict(type="EMAHead", ema_channels=8, num_bases=4, num_stages=2, momentum=0.1),
}  # fmt: skip


def _build(cfg):
    head = MODELS.build({**COMMON, **cfg})
    head.init_weights()
    return head


def _inputs(n=2, size=(6, 5)):
    torch.manual_seed(0)
    return [torch.randn(n, 16, *size) for _ in range(4)]


def _samples(n, size=(12, 10)):
    g = torch.Generator().manual_seed(0)
    return [
        DataSample(gt_sem_seg=PixelData(torch.randint(0, 5, (1, *size), generator=g)))
        for _ in range(n)
    ]


@pytest.mark.parametrize("name", sorted(HEADS))
def test_forward_shape_and_train_step(name):
    head = _build(HEADS[name])
    out = head(_inputs())
    logits = out if isinstance(out, torch.Tensor) else out[0]
    assert logits.shape == (2, 5, 6, 5)
    head.train()
    losses = head.loss(_inputs(), _samples(2), train_cfg=None)
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    head.eval()
    pred = head.predict(_inputs(), [dict(img_shape=(12, 10))], test_cfg=None)
    assert pred.shape == (2, 5, 12, 10)


def test_key_layouts():
    keys = set(_build(HEADS["cc"]).state_dict())
    assert {"cca.query_conv.weight", "cca.key_conv.bias", "cca.value_conv.weight",
            "cca.gamma.scale", "convs.1.bn.weight", "conv_cat.conv.weight"} <= keys  # fmt: skip
    keys = set(_build(HEADS["apc"]).state_dict())
    assert {"acm_modules.2.gla.weight", "acm_modules.0.fusion_conv.conv.weight",
            "acm_modules.1.global_info.bn.weight", "bottleneck.conv.weight"} <= keys  # fmt: skip
    keys = set(_build(HEADS["dm"]).state_dict())
    assert {"dcm_modules.0.filter_gen_conv.weight", "dcm_modules.2.norm.running_mean",
            "dcm_modules.1.input_redu_conv.bn.weight"} <= keys  # fmt: skip
    keys = set(_build(HEADS["dnl"]).state_dict())
    assert {"dnl_block.g.conv.weight", "dnl_block.theta.conv.bias", "dnl_block.phi.conv.weight",
            "dnl_block.conv_out.bn.weight", "dnl_block.conv_mask.weight"} <= keys  # fmt: skip
    keys = set(_build(HEADS["gc"]).state_dict())
    assert {"gc_block.conv_mask.weight", "gc_block.channel_add_conv.1.weight",
            "gc_block.channel_add_conv.3.bias"} <= keys  # fmt: skip
    keys = set(_build(HEADS["ema"]).state_dict())
    assert {"ema_module.bases", "ema_mid_conv.conv.weight", "ema_out_conv.bn.weight",
            "conv_cat.conv.weight"} <= keys  # fmt: skip
    keys = set(_build(HEADS["da"]).state_dict())
    assert {"pam.key_project.weight", "pam.query_project.bias", "pam.value_project.weight",
            "pam.gamma.scale", "cam.gamma.scale", "pam_conv_seg.weight",
            "cam_conv_seg.bias", "pam_out_conv.bn.weight"} <= keys  # fmt: skip
    assert not any(k.startswith("pam.out_project") for k in keys)


def test_criss_cross_attention_matches_a_loop():
    torch.manual_seed(0)
    cca = CrissCrossAttention(16)
    torch.nn.init.constant_(cca.gamma.scale, 0.7)
    x = torch.randn(2, 16, 4, 3)
    q, k, v = cca.query_conv(x), cca.key_conv(x), cca.value_conv(x)
    expected = torch.empty_like(x)
    for i in range(4):
        for j in range(3):
            # the column (without the pixel itself) then the row
            others = [(r, j) for r in range(4) if r != i] + [(i, c) for c in range(3)]
            keys = torch.stack([k[:, :, r, c] for r, c in others], dim=-1)
            vals = torch.stack([v[:, :, r, c] for r, c in others], dim=-1)
            attn = torch.einsum("bc,bcl->bl", q[:, :, i, j], keys).softmax(-1)
            expected[:, :, i, j] = 0.7 * torch.einsum("bl,bcl->bc", attn, vals) + x[:, :, i, j]
    torch.testing.assert_close(cca(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["embedded_gaussian", "dot_product", "gaussian", "concatenation"])
@pytest.mark.parametrize("sub_sample", [False, True])
def test_non_local_modes(mode, sub_sample):
    block = NonLocal2d(8, sub_sample=sub_sample, mode=mode, norm_cfg=BN)
    x = torch.randn(2, 8, 4, 6)
    # conv_out's norm starts at zero: the block starts as the identity
    torch.testing.assert_close(block(x), x)
    block.init_weights(zeros_init=False)
    assert block(x).shape == x.shape
    assert ("theta.conv.weight" in block.state_dict()) == (mode != "gaussian")
    assert ("concat_project.conv.weight" in block.state_dict()) == (mode == "concatenation")


def test_context_block_starts_as_identity():
    block = ContextBlock(8, ratio=0.5, fusion_types=("channel_add", "channel_mul"))
    x = torch.randn(2, 8, 3, 4)
    # the mul term is sigmoid(0) = 0.5 at init, the add term 0
    torch.testing.assert_close(block(x), 0.5 * x)


def test_ema_bases_follow_the_batch_in_training_only():
    head = _build(HEADS["ema"])
    before = head.ema_module.bases.clone()
    head.eval()
    head(_inputs())
    torch.testing.assert_close(head.ema_module.bases, before)
    head.train()
    head(_inputs())
    assert not torch.allclose(head.ema_module.bases, before)
    assert "ema_module.bases" in dict(head.named_buffers())
    assert not any(p.requires_grad for p in head.ema_mid_conv.parameters())


def test_da_head_losses_and_prediction_use_all_branches():
    head = _build(HEADS["da"])
    losses = head.loss(_inputs(), _samples(2), train_cfg=None)
    assert set(losses) == {f"{b}.{k}" for b in ("pam_cam", "pam", "cam")
                           for k in ("loss_ce", "acc_seg")}  # fmt: skip
    head.eval()
    pam_cam, pam, cam = head(_inputs())
    assert pam.shape == cam.shape == pam_cam.shape
    pred = head.predict(_inputs(), [dict(img_shape=(6, 5))], test_cfg=None)
    torch.testing.assert_close(pred, pam_cam)


@pytest.mark.parametrize(
    "cfg, match",
    [
        (dict(type="NLHead", mode="cosine"), "mode='cosine'"),
        (dict(type="GCHead", pooling_type="max"), "pooling_type='max'"),
        (dict(type="GCHead", fusion_types=("channel_sub",)), "channel_sub"),
        (dict(type="APCHead", pool_scales=3), "pool_scales"),
        (dict(type="DMHead", filter_sizes=()), "filter_sizes"),
        (dict(type="EMAHead", ema_channels=8, num_bases=4, num_stages=0), "num_stages"),
        (dict(type="CCHead", recurrence=-1), "recurrence"),
        (dict(type="DAHead", pam_channels=8, pam_chanels=4), "pam_chanels"),
    ],
    ids=["nl-mode", "gc-pool", "gc-fusion", "apc-scales", "dm-sizes", "ema-stages",
         "cc-recurrence", "da-typo"],
)  # fmt: skip
def test_bad_arguments_are_named(cfg, match):
    with pytest.raises(Exception, match=match):
        MODELS.build({**COMMON, **cfg})
