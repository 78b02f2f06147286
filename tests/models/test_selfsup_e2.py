"""MAE on HiViT and iTPN (group E2): what the upstream oracle does not check — fixed
masks, the clip branch on its own, the plain forward, and clear errors for bad values."""

from __future__ import annotations

import pytest
import torch

from vistra.models.selfsup.itpn import iTPN, iTPNClipHead, iTPNHiViT, iTPNPretrainDecoder
from vistra.models.selfsup.mae import MAE
from vistra.models.selfsup.mae_hivit import MAEHiViT, hivit_masking_ids
from vistra.registry import MODELS

TINY = dict(embed_dims=64, depths=[1, 1, 2], num_heads=2)


def _pixel_itpn() -> iTPN:
    model = iTPN(
        backbone=dict(type="iTPNHiViT", arch=TINY, img_size=64),
        neck=dict(
            type="iTPNPretrainDecoder",
            num_patches=16,
            embed_dim=64,
            fpn_dim=32,
            fpn_depth=1,
            decoder_embed_dim=32,
            decoder_depth=1,
            decoder_num_heads=2,
        ),
        head=dict(
            type="MAEPretrainHead",
            norm_pix=True,
            patch_size=16,
            loss=dict(type="PixelReconstructionLoss", criterion="L2"),
        ),
    )
    model.init_weights()
    return model.eval()


def test_registered_names():
    for name in ("MAEHiViT", "iTPNHiViT", "iTPNPretrainDecoder", "iTPNClipHead", "iTPN"):
        assert MODELS.get(name) is not None


def test_masking_ids_draw_as_upstream_and_noise_fixes_them():
    backbone = MAEHiViT(arch=TINY, img_size=64)
    torch.manual_seed(0)
    noise = torch.rand(3, 16)
    torch.manual_seed(0)
    drawn = hivit_masking_ids(backbone, 3, 0.75)
    fixed = hivit_masking_ids(backbone, 3, 0.75, noise)
    for a, b in zip(drawn, fixed):
        assert torch.equal(a, b)
    ids_keep, ids_restore, mask = fixed
    assert ids_keep.shape == (3, 4) and mask.sum(1).tolist() == [12.0] * 3
    assert torch.equal(ids_keep, torch.argsort(noise, 1)[:, :4])
    assert torch.equal(mask.gather(1, ids_keep), torch.zeros(3, 4))
    assert torch.equal(torch.argsort(ids_restore, 1)[:, :4], ids_keep)


def test_mae_hivit_masked_and_plain_forward():
    backbone = MAEHiViT(arch=TINY, img_size=64)
    backbone.init_weights()
    assert not backbone.pos_embed.requires_grad
    x = torch.randn(2, 3, 64, 64)
    latent, mask, ids_restore = backbone(x, noise=torch.rand(2, 16))
    assert latent.shape == (2, 4, 64) and mask.shape == ids_restore.shape == (2, 16)
    feats = backbone(x, mask=None)
    assert feats[-1].shape == (2, 64, 4, 4)
    model = MAE(
        backbone=backbone,
        neck=dict(
            type="MAEPretrainDecoder",
            num_patches=16,
            embed_dim=64,
            decoder_embed_dim=32,
            decoder_depth=1,
            decoder_num_heads=2,
        ),
        head=dict(
            type="MAEPretrainHead", loss=dict(type="PixelReconstructionLoss", criterion="L2")
        ),
    )
    noise = torch.rand(2, 16)
    a = model.loss(x, None, noise=noise)["loss"]
    assert torch.equal(a, model.loss(x, None, noise=noise)["loss"])


def test_itpn_pixel_features_and_loss():
    model = _pixel_itpn()
    x = torch.randn(2, 3, 64, 64)
    noise = torch.rand(2, 16)
    feats, mask, ids_restore = model.backbone(x, noise=noise)
    assert [tuple(f.shape) for f in feats] == [(2, 4, 4, 4, 16), (2, 4, 2, 2, 32), (2, 4, 64)]
    pred = model.neck(feats, ids_restore)
    assert pred.shape == (2, 16, 16 * 16 * 3)
    loss = model(x, None, mode="loss")["loss"]
    assert torch.isfinite(loss)
    fixed = model.loss(x, None, noise=noise)["loss"]
    assert torch.equal(fixed, model.loss(x, None, noise=noise)["loss"])
    assert model(x, mode="tensor")[-1].shape == (2, 64, 4, 4)


def test_itpn_clip_branch_with_a_stub_target():
    backbone = iTPNHiViT(
        arch=TINY, img_size=64, rpe=True, layer_scale_init_value=0.1, reconstruction_type="clip"
    )
    neck = iTPNPretrainDecoder(
        embed_dim=64, fpn_dim=32, fpn_depth=1, decoder_embed_dim=64, reconstruction_type="clip"
    )
    head = iTPNClipHead(embed_dims=64, num_embed=8, loss=torch.nn.MSELoss())

    class Target(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
            return torch.ones(x.shape[0], 17, 8), None

    model = iTPN(backbone=backbone, neck=neck, head=head, target_generator=Target())
    model.init_weights()
    assert not hasattr(neck, "mask_token") and hasattr(backbone, "mask_token")
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 4, 4, dtype=torch.long)
    mask[:, :2] = 1
    feats = backbone(x, mask)
    assert feats[-1].shape == (2, 16, 64)
    assert neck(feats).shape == (2, 16, 64)

    from vistra.data.structures import DataSample

    samples = [DataSample() for _ in range(2)]
    for sample, m in zip(samples, mask):
        sample.mask = m
    loss = model.eval()([x, x], samples, mode="loss")["loss"]
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="two views"):
        model(x, samples, mode="loss")


def test_bad_values_raise_clear_errors():
    with pytest.raises(ValueError, match="reconstruction_type"):
        iTPNHiViT(arch=TINY, img_size=64, reconstruction_type="dalle")
    with pytest.raises(ValueError, match="reconstruction_type"):
        iTPNPretrainDecoder(reconstruction_type="dalle")
    with pytest.raises(ValueError, match="num_outs"):
        iTPNPretrainDecoder(num_outs=4)
    with pytest.raises(ValueError, match="mask_ratio"):
        MAEHiViT(arch=TINY, img_size=64, mask_ratio=1.0)
    with pytest.raises(ValueError, match="noise"):
        MAEHiViT(arch=TINY, img_size=64)(torch.randn(1, 3, 64, 64), noise=torch.rand(1, 3))
