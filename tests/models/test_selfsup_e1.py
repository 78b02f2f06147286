"""Unit checks of group E1 (CLIP target, EVA, MILAN, MFF) that the upstream oracle does
not make: CLIP's attention against torch's own, the teacher's loading and freezing,
MILAN's masking and prompting decoder, MFF's fusion weights, the torchvision wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vistra.data.transforms.base import Compose
from vistra.models.selfsup.clip_vit import CLIPGenerator, CLIPModel, clip_arch, save_random_clip
from vistra.models.selfsup.mff import MFFViT
from vistra.models.selfsup.milan import MILANPretrainDecoder, attention_masking
from vistra.registry import MODELS, TRANSFORMS, RegistryError

TINY = dict(
    embed_dim=16,
    image_resolution=32,
    vision_layers=2,
    vision_width=64,
    vision_patch_size=16,
    context_length=4,
    vocab_size=8,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=1,
)
SMALL_VIT = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    return save_random_clip(tmp_path_factory.mktemp("clip") / "clip.pth", **TINY)


def test_clip_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    model = CLIPModel(**{**TINY, "vision_width": 128}).eval()  # two heads
    block = model.visual.transformer.resblocks[-1]
    ref = nn.MultiheadAttention(128, 2)
    ref.load_state_dict(block.attn.state_dict())
    x = torch.randn(3, 5, 128)
    out, weights = block.attn(x, need_weights=True)
    ref_out, ref_weights = ref(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1))
    torch.testing.assert_close(out, ref_out.transpose(0, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=1e-5)
    fast, _ = block.attn(x)  # the scaled_dot_product_attention path
    torch.testing.assert_close(fast, out, atol=1e-5, rtol=1e-5)


def test_clip_generator_reads_its_checkpoint_and_stays_frozen(clip_file):
    gen = CLIPGenerator(str(clip_file))
    state = torch.load(clip_file, weights_only=True)
    assert clip_arch(state) == TINY
    torch.testing.assert_close(gen.tokenizer.visual.proj, state["visual.proj"])
    assert not any(p.requires_grad for p in gen.parameters())
    gen.train()
    assert not gen.tokenizer.training
    feats, attention = gen(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 5, 16) and attention.shape == (2, 5, 5)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 5))
    with pytest.raises(ValueError, match="32px"):
        gen(torch.randn(1, 3, 64, 64))


def test_clip_generator_url_builds_vit_b16_without_network():
    with torch.device("meta"):
        gen = CLIPGenerator("https://example.invalid/clip_vit_base_16.pth")
    keys = gen.state_dict()
    assert keys["tokenizer.visual.conv1.weight"].shape == (768, 3, 16, 16)
    assert keys["tokenizer.visual.positional_embedding"].shape == (197, 768)
    assert keys["tokenizer.token_embedding.weight"].shape == (49408, 512)


def test_clip_generator_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="no such file"):
        CLIPGenerator(str(tmp_path / "absent.pth"))


def test_attention_masking_keeps_the_important_patches():
    x = torch.arange(8.0).view(1, 8, 1).expand(2, 8, 3)
    importance = torch.tensor([[1.0, 1.0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1.0, 1.0]])
    kept, ids_restore, ids_keep, ids_dump = attention_masking(x, 0.75, importance)
    assert kept.shape == (2, 2, 3)
    assert sorted(ids_keep[0].tolist()) == [0, 1] and sorted(ids_keep[1].tolist()) == [6, 7]
    order = torch.cat([ids_keep, ids_dump], dim=1)
    assert torch.equal(torch.gather(order, 1, ids_restore), torch.arange(8).expand(2, 8))


def test_milan_decoder_leaves_the_visible_tokens_unchanged():
    torch.manual_seed(0)
    dec = MILANPretrainDecoder(
        num_patches=4,
        embed_dim=32,
        decoder_embed_dim=32,
        decoder_depth=2,
        decoder_num_heads=2,
        predict_feature_dim=8,
    ).eval()
    dec.init_weights()
    assert {"attn.q.weight", "attn.kv.weight"} <= set(dec.decoder_blocks[0].state_dict())
    latent = torch.randn(1, 2, 32)  # class token + one visible patch
    ids_keep, ids_dump = torch.tensor([[2]]), torch.tensor([[0, 1, 3]])
    ids_restore = torch.argsort(torch.cat([ids_keep, ids_dump], 1), dim=1)
    pred = dec(latent, ids_restore, ids_keep, ids_dump)
    assert pred.shape == (1, 5, 8)
    # the visible patch never passes a decoder layer: only embed, position, norm, pred
    visible = dec.decoder_embed(latent[:, 1]) + dec.decoder_pos_embed[:, 1 + 2]
    torch.testing.assert_close(pred[:, 1 + 2], dec.decoder_pred(dec.decoder_norm(visible)))


def test_mff_fusion_weights():
    vit = MFFViT(arch=SMALL_VIT, img_size=32, out_indices=[0, 1])
    vit.init_weights()
    latent, mask, ids_restore, weights = vit(torch.randn(2, 3, 32, 32))
    assert latent.shape == (2, 2, 32) and mask.shape == (2, 4)
    torch.testing.assert_close(weights, torch.full((2,), 0.5))
    assert len(vit.proj_layers) == 1 and vit.proj_weights.requires_grad
    assert not MFFViT(arch=SMALL_VIT, img_size=32).proj_weights.requires_grad


def test_eva_without_target_generator_is_a_clear_error():
    model = MODELS.build(
        dict(
            type="EVA",
            backbone=dict(type="MAEViT", arch=SMALL_VIT, img_size=32),
            neck=dict(
                type="MAEPretrainDecoder",
                num_patches=4,
                embed_dim=32,
                decoder_embed_dim=16,
                decoder_depth=1,
                decoder_num_heads=2,
            ),
            head=dict(type="MIMHead", loss=dict(type="CosineSimilarityLoss")),
        )
    )
    with pytest.raises(ValueError, match="target_generator"):
        model.loss(torch.randn(1, 3, 32, 32))


def test_torchvision_pipeline_round_trip():
    pipeline = Compose(
        [
            dict(type="ToPIL", to_rgb=True),
            dict(type="torchvision/Resize", size=16, interpolation="bicubic"),
            dict(type="torchvision/RandomCrop", size=16, padding=4, padding_mode="reflect"),
            dict(type="ToNumpy", to_bgr=True),
        ]
    )
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    img[..., 0] = 200  # blue in BGR
    out = pipeline({"img": img.copy()})["img"]
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 200).all() and (out[..., 2] == 0).all()


def test_torchvision_wrapper_errors():
    with pytest.raises(RegistryError, match="size"):
        TRANSFORMS.build(dict(type="torchvision/Resize", sise=3))
    with pytest.raises(Exception, match="interpolation"):
        TRANSFORMS.build(dict(type="torchvision/Resize", size=3, interpolation="cubic"))
