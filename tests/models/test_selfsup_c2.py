"""MixMIM, SparK, Lamb and CosineAnnealingWeightDecay: what the upstream oracle does not
check (the sparse layers' definitions, the mixing mask's isolation, the optimizer's update
against its formula, clear errors)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vistra.engine.lamb import Lamb
from vistra.engine.weight_decay_schedulers import CosineAnnealingWeightDecay
from vistra.models.backbones.mixmim import MixMIMBlock, MixMIMTransformer, MixMIMWindowAttention
from vistra.models.selfsup.mixmim import MixMIMPretrainDecoder, MixMIMPretrainTransformer
from vistra.models.selfsup.spark import SparK
from vistra.models.selfsup.sparse_layers import (
    SparseBatchNorm2d,
    SparseConv2d,
    SparseHelper,
    SparseLayerNorm2D,
    active_mask,
    dense_model_to_sparse,
)

TINY_ARCH = dict(embed_dims=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 2])


def _mask(batch: int = 2, f: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    mask = torch.zeros(batch, 1, f, f, dtype=torch.bool)
    mask[0, 0, 0, 0] = mask[1, 0, 1, 1] = mask[1, 0, 0, 1] = True
    return mask


def test_sparse_conv_zeroes_masked_positions_and_is_dense_without_mask():
    conv = SparseConv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    dense = nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    assert SparseHelper._cur_active is None
    torch.testing.assert_close(conv(x), dense)
    mask = _mask()
    with active_mask(mask):
        out = conv(x)
    full = mask.repeat_interleave(4, 2).repeat_interleave(4, 3)
    torch.testing.assert_close(out, dense * full)
    assert SparseHelper._cur_active is None  # restored after the block


def test_sparse_norms_normalise_visible_positions_only():
    x = torch.randn(2, 6, 4, 4)
    mask = _mask()
    full = mask.repeat_interleave(2, 2).repeat_interleave(2, 3).squeeze(1)
    visible = x.permute(0, 2, 3, 1)[full]  # (n, C)
    bn = SparseBatchNorm2d(6).train()
    ln = SparseLayerNorm2D(6, eps=1e-6)
    with active_mask(mask):
        out_bn, out_ln = bn(x), ln(x)
        out_ln_last = ln(x.permute(0, 2, 3, 1), data_format="channel_last")
    ref_bn = nn.functional.batch_norm(visible, None, None, training=True)
    torch.testing.assert_close(out_bn.permute(0, 2, 3, 1)[full], ref_bn, atol=1e-5, rtol=1e-5)
    assert out_bn.permute(0, 2, 3, 1)[~full].abs().max() == 0
    ref_ln = nn.functional.layer_norm(visible, (6,), eps=1e-6)
    torch.testing.assert_close(out_ln.permute(0, 2, 3, 1)[full], ref_ln)
    torch.testing.assert_close(out_ln_last, out_ln.permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="data_format"):
        ln(x, data_format="nchw")


def test_dense_model_to_sparse_keeps_names_and_values():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.MaxPool2d(2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dense_model_to_sparse(model)
    assert isinstance(model[0], SparseConv2d) and isinstance(model[1], SparseBatchNorm2d)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_mixmim_attention_keeps_the_two_images_apart():
    attn = MixMIMWindowAttention(8, (2, 2), 2).eval()
    x = torch.randn(1, 4, 8)
    mask = torch.tensor([[[0.0], [1.0], [0.0], [1.0]]])
    out = attn(x, mask)
    changed = x.clone()
    changed[0, 1] += 5.0  # a token of the other image
    out2 = attn(changed, mask)
    torch.testing.assert_close(out[0, [0, 2]], out2[0, [0, 2]])
    assert not torch.allclose(out[0, 1], out2[0, 1])


def test_mixmim_mask_and_mixed_forward_shapes():
    torch.manual_seed(0)
    enc = MixMIMPretrainTransformer(arch=TINY_ARCH, img_size=64, window_size=[8, 8, 4, 2])
    enc.init_weights()
    x = torch.randn(2, 3, 64, 64)
    masks = enc.random_masking(x, 0.5)
    assert [m.shape for m in masks] == [(1, 256, 1), (1, 64, 1), (1, 16, 1), (1, 4, 1)]
    assert masks[-1].sum() == 2  # int(4 * 0.5) cells mixed in
    latent, mask = enc(x)
    assert latent.shape == (2, 4, 64) and mask.shape == (1, 4, 1)
    assert enc(x, mask=None)[0].shape == (2, 64)
    dec = MixMIMPretrainDecoder(num_patches=4, embed_dim=64, decoder_embed_dim=16,
                                decoder_depth=1, decoder_num_heads=2)  # fmt: skip
    assert dec(latent, mask).shape == (4, 4, 32 * 32 * 3)
    with pytest.raises(ValueError, match="num_patches"):
        MixMIMPretrainDecoder(num_patches=9, embed_dim=64, decoder_embed_dim=16,
                              decoder_depth=1, decoder_num_heads=2)(latent, mask)  # fmt: skip


def test_mixmim_errors_are_clear():
    with pytest.raises(ValueError, match="arch"):
        MixMIMTransformer(arch="giant")
    assert "B" in MixMIMTransformer.arch_zoo  # the configs' spelling passes argument checks
    with pytest.raises(ValueError, match="windows"):
        MixMIMBlock(8, (16, 16), 1, window_size=14)


def test_spark_rejects_a_wrong_input_size():
    model = SparK(
        backbone=dict(type="SparseConvNeXt", arch=dict(depths=[1, 1, 1, 1], channels=[8, 16, 32, 64]),
                      out_indices=(0, 1, 2, 3), gap_before_output=False, use_grn=True),
        neck=dict(type="SparKLightDecoder", feature_dim=32, upsample_ratio=32,
                  norm_cfg=dict(type="BN")),
        head=dict(type="SparKPretrainHead", loss=dict(type="PixelReconstructionLoss", criterion="L2")),
        input_size=64, enc_dec_norm_cfg=dict(type="SparseLN2d", eps=1e-6), enc_dec_norm_dim=64,
    )  # fmt: skip
    model.train()
    loss = model(torch.randn(2, 3, 64, 64), mode="loss")["loss"]
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="input_size"):
        model(torch.randn(2, 3, 96, 96), mode="loss")
    with pytest.raises(ValueError, match="downsample_raito"):
        SparK(backbone=model.backbone, neck=model.neck, head=model.head, input_size=50)


def test_lamb_step_matches_its_formula():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    grad = torch.randn(4, 3) * 10  # global norm above max_grad_norm=1: clipped
    w0 = w.detach().clone()
    opt = Lamb([w], lr=0.1, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.04)
    w.grad = grad.clone()
    opt.step()
    g = grad / grad.norm()
    m, v = 0.1 * g, 0.05 * g * g
    update = (m / 0.1) / (v.sqrt() / math.sqrt(0.05) + 1e-6) + 0.04 * w0
    expected = w0 - 0.1 * update * (w0.norm() / update.norm())
    torch.testing.assert_close(w.detach(), expected)
    assert opt.param_groups[0]["step"] == 1
    with pytest.raises(ValueError, match="betas"):
        Lamb([w], betas=(0.9, 1.5))


def test_cosine_weight_decay_anneals_and_keeps_zero_groups():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD(
        [{"params": [a], "weight_decay": 0.04}, {"params": [b], "weight_decay": 0.0}], lr=0.1
    )
    sched = CosineAnnealingWeightDecay(opt, eta_min=0.2, T_max=4, by_epoch=False, end=4)
    values = []
    for _ in range(3):  # the window [0, 4) holds steps 1..3 after the initial value
        sched.step()
        values.append([g["weight_decay"] for g in opt.param_groups])
    closed = [0.2 + (0.04 - 0.2) * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(1, 4)]
    assert [v[1] for v in values] == [0.0] * 3
    assert [v[0] for v in values] == pytest.approx(closed)
