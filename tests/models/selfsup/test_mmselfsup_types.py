"""MMSelfSup 1.x's model names and arguments: ``MAEReconstructionLoss``, its ``MAEViT``
(``output_cls_token``), heads that are called directly, and a fixed MAE mask."""

from __future__ import annotations

import pytest
import torch

from vistra.models.selfsup.mae import MAE, MAEViT, SelfSupMAEViT, random_masking
from vistra.models.selfsup.mae_head import (
    MAEPretrainHead,
    MAEReconstructionLoss,
    PixelReconstructionLoss,
)
from vistra.registry import MODELS, RegistryError, default_scope

TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def tiny_mae(loss: dict) -> MAE:
    model = MAE(
        backbone=dict(type="MAEViT", arch=TINY, img_size=32, patch_size=8, mask_ratio=0.75),
        neck=dict(
            type="MAEPretrainDecoder",
            num_patches=16,
            patch_size=8,
            embed_dim=32,
            decoder_embed_dim=16,
            decoder_depth=1,
            decoder_num_heads=2,
        ),
        head=dict(type="MAEPretrainHead", norm_pix=True, patch_size=8, loss=loss),
    )
    model.init_weights()
    return model.eval()


def test_mae_reconstruction_loss_is_the_masked_mean_of_patch_mse():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 5, 12, generator=gen), torch.randn(2, 5, 12, generator=gen)
    mask = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.float32)
    expected = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    loss = MODELS.build(dict(type="MAEReconstructionLoss"))
    assert isinstance(loss, MAEReconstructionLoss)
    torch.testing.assert_close(loss(pred, target, mask), expected)
    torch.testing.assert_close(
        loss(pred, target, mask), PixelReconstructionLoss("L2")(pred, target, mask)
    )
    assert loss(pred, target, torch.zeros(2, 5)).item() == 0.0  # no masked patch: 0, not nan
    half = loss(pred.bfloat16(), target, mask)
    assert half.dtype == torch.float32
    with pytest.raises(RegistryError, match="unexpected argument 'criterion'"):
        MODELS.build(dict(type="MAEReconstructionLoss", criterion="L2"))


def test_mmselfsup_head_arguments_and_call():
    head = MODELS.build(
        dict(
            type="MAEPretrainHead",
            norm_pix=True,
            patch_size=8,
            loss=dict(type="MAEReconstructionLoss"),
        )
    )
    assert isinstance(head, MAEPretrainHead)
    gen = torch.Generator().manual_seed(1)
    img, pred = torch.randn(2, 3, 16, 16, generator=gen), torch.randn(2, 4, 192, generator=gen)
    mask = torch.tensor([[1.0, 1, 0, 0], [0, 1, 1, 1]])
    assert torch.equal(head(pred, img, mask), head.loss(pred, img, mask))
    contrastive = MODELS.build(
        dict(type="ContrastiveHead", loss=dict(type="mmcls.CrossEntropyLoss"), temperature=0.1)
    )
    pos, neg = torch.randn(4, 1, generator=gen), torch.randn(4, 6, generator=gen)
    assert torch.equal(contrastive(pos, neg), contrastive.loss(pos, neg))


def test_mmselfsup_mae_vit_takes_output_cls_token_and_keeps_keys():
    with default_scope("mmselfsup"):
        vit = MODELS.build(
            dict(type="MAEViT", arch=TINY, img_size=32, patch_size=8, output_cls_token=True)
        )
    assert isinstance(vit, SelfSupMAEViT) and isinstance(vit, MAEViT)
    plain = MAEViT(arch=TINY, img_size=32, patch_size=8)
    assert {k: v.shape for k, v in vit.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    vit.init_weights()
    latent, mask, ids_restore = vit(torch.randn(2, 3, 32, 32))
    assert latent.shape == (2, 1 + 4, 32) and mask.shape == (2, 16)
    (tokens,) = vit(torch.randn(1, 3, 32, 32), mask=None)
    assert tokens.shape == (1, 17, 32)
    no_cls = SelfSupMAEViT(arch=TINY, img_size=32, patch_size=8, output_cls_token=False)
    (featmap,) = no_cls(torch.randn(1, 3, 32, 32), mask=None)
    assert featmap.shape == (1, 32, 4, 4)
    with default_scope("mmpretrain"), pytest.raises(RegistryError, match="output_cls_token"):
        MODELS.build(dict(type="MAEViT", arch=TINY, output_cls_token=True))


def test_fixed_noise_fixes_the_mask_and_the_loss():
    x = torch.randn(2, 16, 4)
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(3))
    kept, mask, ids_restore = random_masking(x, 0.75, noise)
    expected = torch.zeros(2, 16)
    expected.scatter_(1, noise.argsort(dim=1)[:, 4:], 1.0)
    assert torch.equal(mask, expected)
    assert torch.equal(kept, torch.gather(x, 1, noise.argsort(1)[:, :4, None].expand(-1, -1, 4)))
    with pytest.raises(ValueError, match=r"\(batch, patches\) = \(2, 16\)"):
        random_masking(x, 0.75, torch.rand(2, 15))

    model = tiny_mae(dict(type="MAEReconstructionLoss"))
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model.loss([img], None, noise=noise)["loss"]
        b = model.loss(img, None, noise=noise)["loss"]
        c = model.loss(img, None, noise=1 - noise)["loss"]
        pred, pix_mask = model.reconstruct(img, noise=noise)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(pix_mask[:, 0, :8, :8], mask[:, :1, None].expand(-1, 8, 8))
