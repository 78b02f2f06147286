"""Group C1 of issue #18 (SimMIM, MaskFeat, PixMIM): what the upstream oracle does not
check: the mask generator's output, the HOG and low-pass targets, the masked forwards
against the plain ones, and the errors for bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vistra.data.transforms.simmim_mask import SimMIMMaskGenerator
from vistra.models.selfsup.hog import HOGGenerator
from vistra.models.selfsup.maskfeat import MaskFeatViT, SelfSupMaskFeatViT
from vistra.models.selfsup.pixmim import LowFreqTargetGenerator
from vistra.models.selfsup.reconstruction_losses import SimMIMReconstructionLoss
from vistra.models.selfsup.simmim import SimMIMHead, SimMIMSwinTransformer
from vistra.registry import MODELS

TINY_SWIN = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 2])
TINY_VIT = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def test_simmim_mask_generator_masks_whole_blocks():
    np.random.seed(0)
    gen = SimMIMMaskGenerator(input_size=64, mask_patch_size=16, model_patch_size=4, mask_ratio=0.6)
    mask = gen.transform({})["mask"]
    assert mask.shape == (16, 16) and set(np.unique(mask)) <= {0, 1}
    blocks = mask.reshape(4, 4, 4, 4).transpose(0, 2, 1, 3).reshape(16, 16)
    assert all(len(set(b)) == 1 for b in blocks)  # each 16-px block all 0 or all 1
    assert mask.sum() == int(np.ceil(16 * 0.6)) * 16
    assert "mask_ratio=0.6" in repr(gen)


@pytest.mark.parametrize(
    "kwargs, word",
    [(dict(input_size=60), "input_size"), (dict(model_patch_size=5), "mask_patch_size"),
     (dict(mask_ratio=1.5), "mask_ratio")],
)  # fmt: skip
def test_simmim_mask_generator_rejects_bad_sizes(kwargs, word):
    with pytest.raises(ValueError, match=word):
        SimMIMMaskGenerator(**kwargs)


def test_simmim_swin_unmasked_equals_plain_forward():
    torch.manual_seed(0)
    model = SimMIMSwinTransformer(
        arch=TINY_SWIN, img_size=32, stage_cfgs=dict(block_cfgs=dict(window_size=1))
    )
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    plain = model(x, mask=None)[0]
    assert torch.allclose(model(x, torch.zeros(2, 8, 8))[0], plain, atol=1e-6)
    # a masked patch sees the mask token, so the map changes
    assert not torch.allclose(model(x, torch.ones(2, 8, 8))[0], plain, atol=1e-4)
    with pytest.raises(ValueError, match="patch grid"):
        model(x, torch.zeros(2, 4, 4))


def test_simmim_head_and_loss_use_masked_pixels_only():
    head = SimMIMHead(
        patch_size=4, loss=dict(type="SimMIMReconstructionLoss", encoder_in_channels=3)
    )
    pred, target = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    mask = torch.tensor([[[1, 0], [0, 0]]])
    target[:, :, 4:, 4:] = 5.0  # unmasked pixels do not count
    expected = 3 * 16 * 1.0 / (16 + 1e-5) / 3
    assert head(pred, target, mask).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="encoder_in_channels"):
        SimMIMReconstructionLoss(0)


@pytest.mark.parametrize("cls, kwargs", [(MaskFeatViT, {}), (SelfSupMaskFeatViT, {})])
def test_maskfeat_vit_unmasked_equals_plain_tokens(cls, kwargs):
    torch.manual_seed(0)
    model = cls(arch=TINY_VIT, img_size=32, patch_size=16, **kwargs)
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = model(x, torch.zeros(2, 4, dtype=torch.bool))
    assert tokens.shape == (2, 5, 32)
    if cls is MaskFeatViT:  # out_type='raw': all tokens after the final norm
        assert torch.allclose(tokens, model(x, mask=None)[0], atol=1e-6)
    masked = model(x, torch.ones(2, 2, 2, dtype=torch.bool))  # (B, h, w) masks work too
    assert not torch.allclose(masked, tokens, atol=1e-4)


def test_hog_generator_shapes_and_normalised_cells():
    hog = HOGGenerator(nbins=9, pool=8, gaussian_window=16)
    out = hog(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 196, 108) and hog.unfold_size == 2
    cells = hog.out  # (B, 3, nbins, 28, 28), L2-normalised over the bins
    assert torch.allclose(cells.norm(dim=2), torch.ones(2, 3, 28, 28), atol=1e-5)
    assert set(dict(hog.named_buffers())) == {"weight_x", "weight_y", "gaussian_kernel"}
    with pytest.raises(ValueError, match="14x14"):
        hog(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="gaussian_window"):
        HOGGenerator(gaussian_window=16)(torch.randn(1, 3, 232, 232))


def test_low_freq_target_generator_filter_and_identity():
    gen = LowFreqTargetGenerator(radius=3, img_size=8)
    naive = torch.ones(3, 8, 8)
    for i in range(8):
        for j in range(8):
            if (i - 3.5) ** 2 + (j - 3.5) ** 2 > 9:
                naive[:, i, j] = 0
    assert torch.equal(gen.low_pass_filter, naive)
    # a filter passing every frequency gives back the (positive, de-normalised) image
    everything = LowFreqTargetGenerator(radius=100, img_size=(8, 8))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    img = (torch.rand(2, 3, 8, 8) - mean) / std
    assert torch.allclose(everything(img), img, atol=1e-4)
    with pytest.raises(ValueError, match="img_size"):
        gen(torch.randn(1, 3, 16, 16))


def test_both_decoder_names_and_scoped_variants_are_registered():
    neck = MODELS.build(dict(type="SimMIMNeck", in_channels=8, encoder_stride=4))
    assert neck(torch.randn(1, 8, 2, 2)).shape == (1, 3, 8, 8)
    assert MODELS.build(dict(type="SimMIMLinearDecoder", in_channels=8, encoder_stride=4))
