"""Group D (BEiT v1/v2, CAE): what the upstream oracle does not check.

The mask generator's and the two-picture crop's outputs, the two-normalisation
preprocessors, the VQKD codebook (k-means start, EMA update, the one-process reduce), the
CAE teacher's momentum update and the clear errors of bad arguments.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vistra.data.transforms.beit_transforms import (
    BEiTMaskGenerator,
    RandomResizedCropAndInterpolationWithTwoPic,
    SelfSupBEiTMaskGenerator,
    SelfSupRandomResizedCropAndInterpolationWithTwoPic,
)
from vistra.models.selfsup.beit_v2 import BEiTV2Neck
from vistra.models.selfsup.cae import CAE, CAENeck
from vistra.models.selfsup.dall_e import DALLEEncoder
from vistra.models.selfsup.two_norm_preprocessor import (
    CAEDataPreprocessor,
    TwoNormDataPreprocessor,
)
from vistra.models.selfsup.vqkd import NormEMAVectorQuantizer, kmeans
from vistra.registry import MODELS, TRANSFORMS, default_scope


@pytest.mark.parametrize("cls", [BEiTMaskGenerator, SelfSupBEiTMaskGenerator])
@pytest.mark.parametrize("count", [1, 20, 75])
def test_mask_generator_masks_exactly_the_asked_count(cls, count):
    np.random.seed(0)
    gen = cls(input_size=(14, 14), num_masking_patches=count, min_num_patches=1)
    for _ in range(3):
        mask = gen({})["mask"]
        assert mask.shape == (14, 14) and set(np.unique(mask)) <= {0, 1}
        assert mask.sum() == count


def test_mask_generator_rejects_impossible_counts():
    with pytest.raises(ValueError, match="num_masking_patches"):
        BEiTMaskGenerator(input_size=4, num_masking_patches=17)


def test_mask_generator_names_a_grid_too_small_for_its_blocks():
    # on a 2x2 grid every 1x1 block lands on patch (0, 0): upstream would loop forever
    gen = BEiTMaskGenerator(input_size=2, num_masking_patches=2, min_num_patches=1)
    with pytest.raises(RuntimeError, match="cannot place 2 masked patches"):
        gen({})


def test_mask_generators_are_scoped():
    assert TRANSFORMS.get("BEiTMaskGenerator") is BEiTMaskGenerator
    with default_scope("mmselfsup"):
        assert TRANSFORMS.get("BEiTMaskGenerator") is SelfSupBEiTMaskGenerator
        crop = TRANSFORMS.get("RandomResizedCropAndInterpolationWithTwoPic")
        assert crop is SelfSupRandomResizedCropAndInterpolationWithTwoPic


@pytest.mark.parametrize(
    "cls",
    [
        RandomResizedCropAndInterpolationWithTwoPic,
        SelfSupRandomResizedCropAndInterpolationWithTwoPic,
    ],
)
def test_two_pic_crop_gives_both_sizes(cls):
    img = np.random.RandomState(0).randint(0, 256, (50, 70, 3), dtype=np.uint8)
    crop = cls(size=32, second_size=16, interpolation="bicubic", second_interpolation="lanczos")
    out = crop({"img": img})
    assert [v.shape for v in out["img"]] == [(32, 32, 3), (16, 16, 3)]
    single = cls(size=24)({"img": img})["img"]
    assert single.shape == (24, 24, 3)


def test_two_pic_crop_rejects_unknown_interpolation():
    with pytest.raises(ValueError, match="second_interpolation"):
        RandomResizedCropAndInterpolationWithTwoPic(size=8, second_interpolation="cubic")


def test_two_norm_preprocessor_normalises_each_view_with_its_own_statistics():
    pre = TwoNormDataPreprocessor(
        mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], second_mean=[-31.875] * 3,
        second_std=[318.75] * 3, to_rgb=True,
    )  # fmt: skip
    views = [torch.rand(2, 3, 8, 8) * 255, torch.rand(2, 3, 4, 4) * 255]
    out = pre({"inputs": [v.clone() for v in views], "data_samples": None})["inputs"]
    rgb = [v.flip(1) for v in views]
    mean = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    torch.testing.assert_close(out[0], (rgb[0] - mean) / 2.0)
    torch.testing.assert_close(out[1], (rgb[1] + 31.875) / 318.75)
    # the first view's statistics are back in place after the second view
    torch.testing.assert_close(pre.mean.flatten(), torch.tensor([1.0, 2.0, 3.0]))


def test_cae_preprocessor_maps_the_second_view_to_the_dalle_range():
    pre = CAEDataPreprocessor(mean=[0.0] * 3, std=[1.0] * 3)
    views = [torch.zeros(1, 3, 4, 4), torch.full((1, 3, 2, 2), 255.0)]
    out = pre({"inputs": views, "data_samples": None})["inputs"]
    torch.testing.assert_close(out[1], torch.full((1, 3, 2, 2), 0.9))


def test_two_norm_preprocessor_needs_two_views():
    pre = TwoNormDataPreprocessor(mean=[0.0], std=[1.0], second_mean=[0.0], second_std=[1.0])
    with pytest.raises(ValueError, match="two views"):
        pre({"inputs": torch.zeros(1, 3, 4, 4), "data_samples": None})


def test_vqkd_quantizer_starts_by_kmeans_and_moves_its_codebook_in_training():
    torch.manual_seed(0)
    quantizer = NormEMAVectorQuantizer(num_embed=4, embed_dims=3, beta=1.0, decay=0.5)
    assert not bool(quantizer.embedding.initted)
    z = torch.randn(2, 3, 2, 2)
    quantizer.train()
    z_q, loss, indices = quantizer(z)
    assert bool(quantizer.embedding.initted) and indices.shape == (8,)
    assert z_q.shape == z.shape and torch.isfinite(loss)
    # the codebook stays on the unit sphere and code usage is counted (one process)
    norms = quantizer.embedding.weight.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(4))
    assert quantizer.cluster_size.sum().item() == pytest.approx(0.5 * 8)
    before = quantizer.embedding.weight.clone()
    quantizer.eval()
    quantizer(z)
    torch.testing.assert_close(quantizer.embedding.weight, before)  # eval: codebook fixed


def test_kmeans_finds_separated_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[10.0, 0.0], [-10.0, 0.0]])
    samples = torch.cat([centres[0] + torch.randn(20, 2), centres[1] + torch.randn(20, 2)])
    means, bins = kmeans(samples, 2, 10)
    assert sorted(bins.tolist()) == [20, 20]
    torch.testing.assert_close(means[means[:, 0].argsort()], centres.flip(0), atol=1.0, rtol=0)


def test_dalle_encoder_downsamples_eight_times():
    enc = DALLEEncoder(n_hid=8, vocab_size=16)
    assert enc(torch.rand(1, 3, 16, 16)).shape == (1, 16, 2, 2)
    with pytest.raises(ValueError, match="channels"):
        enc(torch.rand(1, 1, 16, 16))


TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def _tiny_cae(momentum: float) -> CAE:
    return CAE(
        backbone=dict(type="CAEPretrainViT", arch=TINY_ARCH, img_size=32, layer_scale_init_value=0.1),
        neck=dict(type="CAENeck", num_classes=16, embed_dims=32, regressor_depth=1,
                  decoder_depth=1, num_heads=2, mask_tokens_num=2, layer_scale_init_value=0.1),
        head=dict(type="CAEHead", loss=dict(type="CAELoss", lambd=2)),
        target_generator=dict(type="DALL-E", n_hid=8, vocab_size=16),
        base_momentum=momentum,
    )  # fmt: skip


def test_cae_teacher_starts_as_the_backbone_and_follows_it_by_momentum():
    from vistra.data.structures import DataSample

    torch.manual_seed(0)
    model = _tiny_cae(0.5)
    model.init_weights()
    for s, t in zip(model.backbone.parameters(), model.teacher.parameters()):
        torch.testing.assert_close(s, t)
        assert not t.requires_grad
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    expected = [t + 0.5 for t in model.teacher.parameters()]
    samples = [DataSample() for _ in range(2)]
    for sample in samples:
        sample.mask = torch.tensor([[1, 0], [0, 1]])
    losses = model.loss([torch.rand(2, 3, 32, 32), torch.rand(2, 3, 16, 16)], samples)
    assert set(losses) == {"loss", "main", "align"}
    for t, e in zip(model.teacher.parameters(), expected):
        torch.testing.assert_close(t, e)


def test_cae_neck_names_a_wrong_mask_token_count():
    neck = CAENeck(num_classes=4, embed_dims=8, regressor_depth=1, decoder_depth=1,
                   num_heads=2, mask_tokens_num=3)  # fmt: skip
    with pytest.raises(ValueError, match="mask_tokens_num"):
        neck(torch.zeros(1, 2, 8), torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="backbone_arch"):
        BEiTV2Neck(backbone_arch="huge")
    with pytest.raises(ValueError, match="use_abs_pos_emb"):
        MODELS.build(
            dict(type="CAEPretrainViT", arch=TINY_ARCH, img_size=32, use_abs_pos_emb=False)
        )


def test_mmcls_beit_backbone_has_the_fine_tuning_keys():
    # the backbone of MMSelfSup's BEiT/CAE fine-tuning configs (not registered yet, see
    # MMClsBEiT), with the arguments of benchmarks/.../vit-base-p16_ft-8xb128-coslr-100e-rpe
    from vistra.models.selfsup.beit_pretrain import MMClsBEiT

    backbone = MMClsBEiT(arch=TINY_ARCH, img_size=32, avg_token=True, final_norm=False,
                         layer_scale_init_value=0.1, output_cls_token=False,
                         use_abs_pos_emb=True, use_rel_pos_bias=True)  # fmt: skip
    keys = set(backbone.state_dict())
    assert {"pos_embed", "ln2.weight", "layers.0.attn.relative_position_bias_table"} <= keys
    assert "ln1.weight" not in keys
    assert backbone(torch.rand(1, 3, 32, 32))[0].shape == (1, 32)
