"""MAE: masking, decoder, target and loss, checkpoint keys, preprocessing, and an end-to-end
pre-training run whose backbone a classifier then loads."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from e2e_support import REPO, run_cli
from PIL import Image
from torch import nn

from vistra.data.datasets.shapes import render_split
from vistra.data.image_io import imwrite
from vistra.models.layers.pos_embed import build_2d_sincos_position_embedding
from vistra.models.selfsup.data_preprocessor import SelfSupDataPreprocessor
from vistra.models.selfsup.mae import (
    MAE,
    MAEPretrainDecoder,
    MAEPretrainHead,
    MAEViT,
    PixelReconstructionLoss,
    random_masking,
)
from vistra.registry import MODELS
from vistra.visualization.mae_reconstruction import reconstruction_panels

TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
INIT = [
    dict(type="Xavier", layer="Linear", distribution="uniform"),
    dict(type="Constant", layer="LayerNorm", val=1.0, bias=0.0),
]


def tiny_mae(norm_pix: bool = False, mask_ratio: float = 0.75, criterion: str = "L2") -> MAE:
    """32x32 images in 8x8 patches (a 4x4 grid), encoder width 32, decoder width 16."""
    model = MAE(
        backbone=dict(type="MAEViT", arch=TINY, img_size=32, patch_size=8, mask_ratio=mask_ratio),
        neck=dict(
            type="MAEPretrainDecoder",
            num_patches=16,
            patch_size=8,
            in_chans=3,
            embed_dim=32,
            decoder_embed_dim=16,
            decoder_depth=1,
            decoder_num_heads=2,
            mlp_ratio=4.0,
        ),
        head=dict(
            type="MAEPretrainHead",
            norm_pix=norm_pix,
            patch_size=8,
            loss=dict(type="PixelReconstructionLoss", criterion=criterion),
        ),
        init_cfg=INIT,
    )
    model.init_weights()
    return model


# ---------------------------------------------------------------------- masking
@pytest.mark.parametrize("ratio, keep", [(0.75, 4), (0.5, 8), (0.6, 6), (0.0, 16)])
def test_masking_keeps_exactly_the_ratio(ratio, keep):
    torch.manual_seed(0)
    x = torch.randn(6, 16, 5)
    kept, mask, ids_restore = random_masking(x, ratio)
    assert kept.shape == (6, keep, 5)
    assert mask.shape == (6, 16)
    assert torch.equal(mask.sum(dim=1), torch.full((6,), 16.0 - keep))
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    for b in range(6):
        # argsort(ids_restore) is the shuffle: kept tokens first, then the removed ones
        ids_shuffle = torch.argsort(ids_restore[b])
        assert torch.equal(kept[b], x[b][ids_shuffle[:keep]])
        assert (mask[b][ids_shuffle[:keep]] == 0).all() and (mask[b][ids_shuffle[keep:]] == 1).all()
        assert torch.equal(x[b][ids_shuffle][ids_restore[b]], x[b])


def test_masking_differs_per_sample_and_per_call():
    torch.manual_seed(0)
    x = torch.randn(8, 196, 4)
    _, mask, _ = random_masking(x, 0.75)
    assert len({tuple(m.tolist()) for m in mask}) == 8
    _, again, _ = random_masking(x, 0.75)
    assert not torch.equal(mask, again)


def test_mae_vit_forward_masks_and_plain_forward_does_not():
    torch.manual_seed(0)
    vit = MAEViT(arch=TINY, img_size=32, patch_size=8, mask_ratio=0.75)
    vit.init_weights()
    latent, mask, ids_restore = vit(torch.randn(3, 3, 32, 32))
    assert latent.shape == (3, 1 + 4, 32)  # class token + 25% of 16 patches
    assert mask.shape == ids_restore.shape == (3, 16)
    assert torch.equal(mask.sum(1), torch.full((3,), 12.0))
    for off in (None, False):
        (feats,) = vit(torch.randn(3, 3, 32, 32), mask=off)
        assert feats.shape == (3, 17, 32)  # out_type='raw': every token


def test_mae_vit_position_embedding_is_fixed_sincos():
    vit = MAEViT(arch=TINY, img_size=32, patch_size=8)
    vit.init_weights()
    assert not vit.pos_embed.requires_grad
    expected = build_2d_sincos_position_embedding(4, 32, cls_token=True)
    assert torch.equal(vit.pos_embed.data, expected)
    assert vit.cls_token.abs().sum() > 0  # N(0, 0.02), not left at zero


def test_mask_ratio_out_of_range_is_refused():
    with pytest.raises(ValueError, match="mask_ratio"):
        MAEViT(arch=TINY, img_size=32, patch_size=8, mask_ratio=1.0)


# ---------------------------------------------------------------------- decoder
def test_decoder_puts_mask_tokens_and_visible_tokens_back_in_image_order():
    torch.manual_seed(0)
    decoder = MAEPretrainDecoder(
        num_patches=16, patch_size=8, embed_dim=32, decoder_embed_dim=16, decoder_depth=0
    )
    decoder.init_weights()
    x = torch.randn(2, 16, 32)
    kept, mask, ids_restore = random_masking(x, 0.75)
    latent = torch.cat([torch.randn(2, 1, 32), kept], dim=1)
    out = decoder(latent, ids_restore)
    assert out.shape == (2, 16, 8 * 8 * 3)
    pos = decoder.decoder_pos_embed[0, 1:]

    def head(tokens):  # what the decoder does after placing tokens, with no blocks
        return decoder.decoder_pred(decoder.decoder_norm(tokens))

    for b in range(2):
        positions = torch.argsort(ids_restore[b])[:4]  # image index of each kept token
        for k, j in enumerate(positions.tolist()):
            token = decoder.decoder_embed(kept[b, k]) + pos[j]
            torch.testing.assert_close(out[b, j], head(token))
        for j in torch.nonzero(mask[b]).flatten().tolist():
            torch.testing.assert_close(out[b, j], head(decoder.mask_token[0, 0] + pos[j]))


def test_decoder_position_embedding_is_fixed_and_norm_is_named_ln1():
    decoder = MAEPretrainDecoder(num_patches=16, patch_size=8, embed_dim=32, decoder_embed_dim=16)
    decoder.init_weights()
    assert not decoder.decoder_pos_embed.requires_grad
    assert torch.equal(
        decoder.decoder_pos_embed.data, build_2d_sincos_position_embedding(4, 16, cls_token=True)
    )
    assert decoder.decoder_norm is decoder.ln1
    assert decoder.ln1.eps == 1e-6
    with pytest.raises(ValueError, match="square"):
        MAEPretrainDecoder(num_patches=15)


# ---------------------------------------------------------------------- target and loss
def test_patchify_layout_and_round_trip():
    head = MAEPretrainHead(loss=dict(type="PixelReconstructionLoss", criterion="L2"), patch_size=4)
    img = torch.randn(2, 3, 8, 12)
    patches = head.patchify(img)
    assert patches.shape == (2, 6, 4 * 4 * 3)
    # patch (gy, gx) = (1, 2) is number 1 * 3 + 2; value index (row * p + col) * C + channel
    b, gy, gx, row, col, ch = 1, 1, 2, 3, 1, 2
    assert (
        patches[b, gy * 3 + gx, (row * 4 + col) * 3 + ch] == img[b, ch, gy * 4 + row, gx * 4 + col]
    )
    assert torch.equal(head.unpatchify(patches, grid=(2, 3)), img)


def test_norm_pix_target_equals_a_hand_computation():
    torch.manual_seed(0)
    head = MAEPretrainHead(
        loss=dict(type="PixelReconstructionLoss", criterion="L2"), norm_pix=True, patch_size=2
    )
    img = torch.rand(1, 3, 4, 4) * 255
    target = head.construct_target(img)
    for gy in range(2):
        for gx in range(2):
            values = [
                float(img[0, c, gy * 2 + r, gx * 2 + q])
                for r in range(2)
                for q in range(2)
                for c in range(3)
            ]
            mean = sum(values) / 12
            var = sum((v - mean) ** 2 for v in values) / 11  # unbiased, as torch.var
            expected = [(v - mean) / (var + 1e-6) ** 0.5 for v in values]
            got = target[0, gy * 2 + gx].double().tolist()
            assert got == pytest.approx(expected, rel=1e-4, abs=1e-4)
    plain = MAEPretrainHead(loss=dict(type="PixelReconstructionLoss", criterion="L2"), patch_size=2)
    assert torch.equal(plain.construct_target(img), plain.patchify(img))


@pytest.mark.parametrize("criterion", ["L1", "L2"])
def test_loss_is_the_mean_over_masked_patches_only(criterion):
    torch.manual_seed(0)
    head = MAEPretrainHead(
        loss=dict(type="PixelReconstructionLoss", criterion=criterion), patch_size=8
    )
    img = torch.randn(2, 3, 32, 32)
    pred = torch.randn(2, 16, 192)
    mask = torch.zeros(2, 16)
    mask[0, [1, 5, 7]] = 1
    mask[1, [0, 2, 3, 4, 9, 15]] = 1
    loss = head.loss(pred, img, mask)
    diff = pred - head.patchify(img)
    per_patch = (diff.abs() if criterion == "L1" else diff.square()).mean(-1)
    torch.testing.assert_close(loss, per_patch[mask == 1].mean())

    changed = pred.clone()
    changed[mask == 0] += torch.randn_like(changed[mask == 0]) * 100  # visible patches
    torch.testing.assert_close(head.loss(changed, img, mask), loss)
    changed[0, 5] += 1.0  # a masked patch
    assert not torch.allclose(head.loss(changed, img, mask), loss)


def test_loss_through_the_whole_model_ignores_visible_predictions():
    torch.manual_seed(0)
    model = tiny_mae()
    img = torch.randn(2, 3, 32, 32)
    captured = {}
    model.neck.register_forward_hook(lambda m, i, o: captured.update(pred=o))
    model.backbone.register_forward_hook(lambda m, i, o: captured.update(mask=o[1]))
    loss = model(img, mode="loss")["loss"]
    pred, mask = captured["pred"], captured["mask"]
    (grad,) = torch.autograd.grad(loss, pred)
    assert grad[mask == 0].abs().max() == 0  # visible patches get no gradient
    assert grad[mask == 1].abs().max() > 0


def test_pixel_loss_options():
    pred, target = torch.ones(1, 4, 3), torch.zeros(1, 4, 3)
    assert PixelReconstructionLoss("L2")(pred, target) == 1.0
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert PixelReconstructionLoss("L1", channel=4)(pred, target, mask) == 0.25
    assert PixelReconstructionLoss("L2")(pred, target, torch.zeros(1, 4)) == 0.0  # no NaN
    with pytest.raises(ValueError, match="L1"):
        PixelReconstructionLoss("L3")


# ---------------------------------------------------------------------- model
def expected_mae_keys(
    dims: int = 768, layers: int = 12, ffn: int = 3072, dec: int = 512, dec_layers: int = 8
) -> list[str]:
    """MMPretrain's MAE state-dict keys in order: its ViT encoder under ``backbone.``, the
    decoder under ``neck.`` (parameters, then decoder_embed, blocks, norm ``ln1``,
    decoder_pred); the head and loss hold no weights."""
    del dims, ffn, dec

    def layer(prefix: str) -> list[str]:
        names = ["ln1", "attn.qkv", "attn.proj", "ln2", "ffn.layers.0.0", "ffn.layers.1"]
        return [f"{prefix}{n}.{w}" for n in names for w in ("weight", "bias")]

    keys = ["backbone.cls_token", "backbone.pos_embed"]
    keys += ["backbone.patch_embed.projection.weight", "backbone.patch_embed.projection.bias"]
    for i in range(layers):
        keys += layer(f"backbone.layers.{i}.")
    keys += ["backbone.ln1.weight", "backbone.ln1.bias"]
    keys += ["neck.mask_token", "neck.decoder_pos_embed"]
    keys += ["neck.decoder_embed.weight", "neck.decoder_embed.bias"]
    for i in range(dec_layers):
        keys += layer(f"neck.decoder_blocks.{i}.")
    keys += [
        "neck.ln1.weight",
        "neck.ln1.bias",
        "neck.decoder_pred.weight",
        "neck.decoder_pred.bias",
    ]
    return keys


def test_state_dict_keys_equal_mmpretrain_mae_vit_base():
    from vistra.config import Config

    cfg = Config.fromfile(REPO / "configs/_base_/models/mae_vit-base-p16.py")
    with torch.device("meta"):
        model = MODELS.build(cfg.model)
    state = model.state_dict()
    assert list(state) == expected_mae_keys()
    assert len(state) == 254
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["backbone.pos_embed"] == (1, 197, 768)
    assert shapes["neck.decoder_pos_embed"] == (1, 197, 512)
    assert shapes["neck.mask_token"] == (1, 1, 512)
    assert shapes["neck.decoder_embed.weight"] == (512, 768)
    assert shapes["neck.decoder_blocks.7.ffn.layers.0.0.weight"] == (2048, 512)
    assert shapes["neck.decoder_pred.weight"] == (16 * 16 * 3, 512)
    assert type(model.data_preprocessor).__name__ == "SelfSupDataPreprocessor"


def test_tensor_mode_gives_unmasked_backbone_features_and_predict_is_refused():
    model = tiny_mae()
    (feats,) = model(torch.randn(2, 3, 32, 32), mode="tensor")
    assert feats.shape == (2, 17, 32)
    with pytest.raises(ValueError, match="linear probe"):
        model(torch.randn(2, 3, 32, 32), mode="predict")


def test_loss_is_finite_under_cpu_bf16_autocast_and_fixed_embeddings_get_no_gradient():
    torch.manual_seed(0)
    model = tiny_mae(norm_pix=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(2, 3, 32, 32), mode="loss")["loss"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert model.backbone.pos_embed.grad is None and model.neck.decoder_pos_embed.grad is None
    assert model.neck.mask_token.grad is not None and model.backbone.cls_token.grad is not None


class _Oracle(nn.Module):
    """A decoder that predicts the true (optionally per-patch normalised) target."""

    def __init__(self, head: MAEPretrainHead, img: torch.Tensor) -> None:
        super().__init__()
        self.target = head.construct_target(img)

    def forward(self, latent, ids_restore):
        return self.target


@pytest.mark.parametrize("norm_pix", [False, True])
def test_reconstruct_undoes_norm_pix_and_returns_an_image_mask(norm_pix):
    torch.manual_seed(0)
    model = tiny_mae(norm_pix=norm_pix)
    img = torch.randn(2, 3, 32, 32) * 3 + 1
    model.neck = _Oracle(model.head, img)
    pred, mask = model.reconstruct(img)
    torch.testing.assert_close(pred, img, rtol=1e-4, atol=1e-4)
    assert mask.shape == (2, 1, 32, 32)
    # whole 8x8 patches, 12 of 16 hidden
    assert torch.equal(mask.sum(dim=(1, 2, 3)), torch.full((2,), 12.0 * 64))
    blocks = mask[:, 0].reshape(2, 4, 8, 4, 8)
    assert torch.equal(blocks.amax(dim=(2, 4)), blocks.amin(dim=(2, 4)))


def test_reconstruction_panels_paste_visible_pixels_over_the_prediction():
    inputs = torch.full((3, 4, 4), 1.0)
    pred = torch.full((3, 4, 4), -1.0)
    mask = torch.zeros(1, 4, 4)
    mask[:, :2] = 1
    original, masked, recon, pasted = reconstruction_panels(
        inputs, pred, mask, mean=[100, 100, 100], std=[50, 50, 50]
    )
    assert original.shape == (4, 4, 3) and original.dtype == np.uint8
    assert (original == 150).all() and (recon == 50).all()
    assert (masked[:2] == 100).all() and (masked[2:] == 150).all()  # hidden -> mean colour
    assert (pasted[:2] == 50).all() and (pasted[2:] == 150).all()


# ---------------------------------------------------------------------- preprocessor
def test_selfsup_preprocessor_keeps_one_view_a_tensor_and_several_views_a_list():
    pre = SelfSupDataPreprocessor(mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], to_rgb=True)
    img = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    img[:, 0] = 9  # the B channel of a BGR image
    expected = (img.flip(1).float() - torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)) / 2
    samples = [object(), object()]

    out = pre({"inputs": img, "data_samples": samples})
    assert torch.equal(out["inputs"], expected) and out["data_samples"] == samples
    out = pre({"inputs": list(img)})  # pseudo_collate: a list of CHW images
    assert torch.equal(out["inputs"], expected)
    views = pre({"inputs": [img, img + 2]})["inputs"]  # default_collate of two views
    assert isinstance(views, list) and len(views) == 2
    assert torch.equal(views[0], expected) and torch.equal(views[1], expected + 1)
    views = pre({"inputs": [list(img), list(img + 2)]})["inputs"]  # pseudo_collate of views
    assert torch.equal(views[1], expected + 1)
    with pytest.raises(KeyError, match="inputs"):
        pre({"img": img})


# ---------------------------------------------------------------------- end to end
TINY_MAE_CFG = """
model = dict(
    type='MAE',
    backbone=dict(type='MAEViT', arch={arch}, img_size=32, patch_size=8, mask_ratio=0.75),
    neck=dict(type='MAEPretrainDecoder', num_patches=16, patch_size=8, in_chans=3, embed_dim=32,
              decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, mlp_ratio=4.),
    head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=8,
              loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    init_cfg=[dict(type='Xavier', layer='Linear', distribution='uniform'),
              dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)])
data_preprocessor = dict(type='SelfSupDataPreprocessor', mean=[127.5, 127.5, 127.5],
                         std=[64.0, 64.0, 64.0], to_rgb=True)
train_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(type='ShapesDataset', num_samples=8, num_classes=3, img_size=32, split='train',
                 pipeline=[dict(type='RandomFlip', prob=0.5), dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=True))
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={{'ln': dict(decay_mult=0.0), 'bias': dict(decay_mult=0.0),
                                    'pos_embed': dict(decay_mult=0.),
                                    'mask_token': dict(decay_mult=0.),
                                    'cls_token': dict(decay_mult=0.)}}))
train_cfg = dict(by_epoch=False, max_iters=2)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False))
randomness = dict(seed=0)
"""


@pytest.fixture(scope="module")
def pretrained_tiny_mae(tmp_path_factory):
    """Two AMP (bf16 on CPU) pre-training iterations through the real CLI."""
    root = tmp_path_factory.mktemp("mae")
    cfg = root / "tiny_mae.py"
    cfg.write_text(TINY_MAE_CFG.format(arch=TINY))
    work = root / "work"
    result = run_cli("train", cfg, "--work-dir", work, "--amp", cwd=root)
    assert result.returncode == 0, result.output[-3000:]
    ckpt = work / "iter_2.pth"
    assert ckpt.is_file(), sorted(p.name for p in work.iterdir())
    return cfg, ckpt


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.slow
def test_pretrain_two_iterations_then_a_classifier_loads_every_backbone_weight(
    pretrained_tiny_mae,
):
    _, ckpt = pretrained_tiny_mae
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert list(saved) == expected_mae_keys(32, 2, 64, 16, 1)
    classifier = MODELS.build(
        dict(
            type="ImageClassifier",
            backbone=dict(
                type="VisionTransformer",
                arch=TINY,
                img_size=32,
                patch_size=8,
                init_cfg=dict(type="Pretrained", checkpoint=str(ckpt), prefix="backbone."),
            ),
            head=dict(type="VisionTransformerClsHead", num_classes=3, in_channels=32),
        )
    )
    records = _Records()
    vistra_logger = logging.getLogger("vistra")
    vistra_logger.addHandler(records)
    old_level = vistra_logger.level
    vistra_logger.setLevel(logging.INFO)
    try:
        classifier.init_weights()
    finally:
        vistra_logger.removeHandler(records)
        vistra_logger.setLevel(old_level)
    (report,) = [line for line in records.lines if line.startswith("load report")]
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in report.splitlines()[3:]
        if line.startswith("| ")
    }
    assert rows["missing"] == "0" and rows["unexpected"] == "0" and rows["shape mismatch"] == "0"
    backbone = classifier.backbone.state_dict()
    assert rows["loaded"] == str(len(backbone))
    for key, value in backbone.items():
        assert torch.equal(value, saved["backbone." + key]), key


@pytest.mark.slow
def test_visualize_reconstruction_tool_writes_four_panels(pretrained_tiny_mae, tmp_path):
    cfg, ckpt = pretrained_tiny_mae
    img, _, _ = render_split("val", 0, seed=0, img_size=32, num_classes=3)
    imwrite(img, tmp_path / "shape.png")
    out = tmp_path / "vis" / "recon.png"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(REPO / "tools/analysis_tools/visualize_reconstruction.py")]
    cmd += [str(cfg), str(ckpt), str(tmp_path / "shape.png"), "--out-file", str(out)]
    proc = subprocess.run(
        cmd + ["--norm-pix", "--seed", "3"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reconstruction saved to" in proc.stdout
    picture = np.asarray(Image.open(out).convert("RGB"))
    # four 32-pixel panels zoomed x5 to 160, 4-pixel gaps, a title strip above
    assert picture.shape[1] == 4 * 160 + 5 * 4
    assert picture.shape[0] > 160
    panels = [picture[-164:-4, 4 + i * 164 : 4 + i * 164 + 160] for i in range(4)]
    original, masked, recon, pasted = panels
    assert not np.array_equal(original, recon)
    visible = (masked == original).all(axis=-1)  # pixels of the patches the encoder saw
    assert 0.1 < visible.mean() < 0.5
    assert np.array_equal(pasted[visible], original[visible])
    # the original panel is the input image, BGR turned RGB, zoomed
    zoomed = img[:, :, ::-1].repeat(5, axis=0).repeat(5, axis=1)
    assert np.abs(original.astype(int) - zoomed.astype(int)).max() <= 1
