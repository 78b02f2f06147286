"""MMSegmentation's VisionTransformer (scope ``mmseg``), mmcv's MultiheadAttention on SDPA,
and Segmenter's mask head."""

import pytest
import torch
from torch import nn

from vistra.models.backbones.vision_transformer import VisionTransformer
from vistra.models.backbones.vit_mmseg import SegVisionTransformer
from vistra.models.heads.segmenter_mask_head import SegmenterMaskTransformerHead
from vistra.models.layers.key_remap import remap_state_dict
from vistra.models.layers.mmcv_attention import MMCVMultiheadAttention
from vistra.registry import MODELS, default_scope

SMALL = dict(img_size=(32, 32), patch_size=8, embed_dims=32, num_layers=2, num_heads=4)


def shapes(module: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_the_scope_picks_the_mmseg_vit():
    with default_scope("mmseg"):
        assert MODELS.get("VisionTransformer") is SegVisionTransformer
    assert MODELS.get("VisionTransformer") is VisionTransformer
    with default_scope("mmseg"):
        model = MODELS.build(dict(type="VisionTransformer", **SMALL))
    assert isinstance(model, SegVisionTransformer)


def test_keys_are_mmsegs():
    keys = shapes(SegVisionTransformer(**SMALL, final_norm=True, pre_norm=True, patch_norm=True))
    assert keys["patch_embed.projection.weight"] == (32, 3, 8, 8)
    assert "patch_embed.projection.bias" not in keys  # patch_bias=False by default
    assert keys["patch_embed.norm.weight"] == (32,)
    assert keys["cls_token"] == (1, 1, 32) and keys["pos_embed"] == (1, 17, 32)
    assert keys["ln_pre.weight"] == (32,) and keys["ln1.weight"] == (32,)
    layer = {k[len("layers.0.") :]: v for k, v in keys.items() if k.startswith("layers.0.")}
    assert layer == {
        "ln1.weight": (32,),
        "ln1.bias": (32,),
        "attn.attn.in_proj_weight": (96, 32),
        "attn.attn.in_proj_bias": (96,),
        "attn.attn.out_proj.weight": (32, 32),
        "attn.attn.out_proj.bias": (32,),
        "ln2.weight": (32,),
        "ln2.bias": (32,),
        "ffn.layers.0.0.weight": (128, 32),
        "ffn.layers.0.0.bias": (128,),
        "ffn.layers.1.weight": (32, 128),
        "ffn.layers.1.bias": (32,),
    }
    no_bias = shapes(SegVisionTransformer(**SMALL, qkv_bias=False))
    assert "layers.0.attn.attn.in_proj_bias" not in no_bias
    assert "layers.0.attn.attn.out_proj.bias" not in no_bias  # mmcv passes bias to both


@pytest.mark.parametrize("batch_first", [True, False])
def test_sdpa_attention_equals_torch_multihead_attention(batch_first):
    torch.manual_seed(0)
    attn = MMCVMultiheadAttention(32, 4, batch_first=batch_first).eval()
    with torch.no_grad():
        attn.attn.in_proj_bias.normal_()
        attn.attn.out_proj.bias.normal_()
    q, k = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    pos = torch.randn(2, 7, 32)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, -2:] = True
    mask = torch.rand(5, 7) > 0.8
    mask[:, 0] = False  # every query keeps a key
    if not batch_first:
        q, k, pos = (t.transpose(0, 1) for t in (q, k, pos))
    with torch.no_grad():
        got = attn(q, k, key_pos=pos, attn_mask=mask, key_padding_mask=pad)
        qb, kb = (q, k + pos) if batch_first else (q.transpose(0, 1), (k + pos).transpose(0, 1))
        vb = k if batch_first else k.transpose(0, 1)
        ref = attn.attn(
            qb.transpose(0, 1), kb.transpose(0, 1), vb.transpose(0, 1),
            attn_mask=mask, key_padding_mask=pad,
        )[0].transpose(0, 1)  # fmt: skip
        ref = (qb + ref) if batch_first else (qb + ref).transpose(0, 1)
    assert torch.allclose(got, ref, atol=1e-5)


def test_forward_outputs_and_cls_token():
    model = SegVisionTransformer(**SMALL, out_indices=[0, 1], output_cls_token=True).eval()
    outs = model(torch.randn(2, 3, 32, 32))
    assert len(outs) == 2
    featmap, cls = outs[1]
    assert featmap.shape == (2, 32, 4, 4) and cls.shape == (2, 32)
    origin = SegVisionTransformer(**SMALL, out_origin=True, with_cls_token=False).eval()
    assert [tuple(o.shape) for o in origin(torch.randn(1, 3, 32, 32))] == [(1, 32, 4, 4)] * 2
    with pytest.raises(ValueError, match="not a layer index"):
        SegVisionTransformer(**SMALL, out_indices=[2])
    with pytest.raises(ValueError, match="with_cls_token"):
        SegVisionTransformer(**SMALL, with_cls_token=False, output_cls_token=True)


def test_position_embedding_follows_the_input_size():
    model = SegVisionTransformer(**SMALL).eval()
    out = model(torch.randn(1, 3, 48, 40))[-1]
    assert out.shape == (1, 32, 6, 5)  # 'corner' padding keeps whole patches


def test_a_pretrained_pos_embed_of_another_grid_is_resized_on_load():
    src = SegVisionTransformer(**{**SMALL, "img_size": (16, 16)})
    model = SegVisionTransformer(**SMALL)
    state = dict(src.state_dict())
    assert remap_state_dict(model, state) == []  # a conversion, not a rename
    assert state["pos_embed"].shape == (1, 17, 32)
    model.load_state_dict(src.state_dict(), strict=True)  # the hook path resizes too


def test_frozen_exclude_norm_eval_and_init():
    model = SegVisionTransformer(**SMALL, frozen_exclude=["pos_embed"], norm_eval=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["pos_embed"]
    model.train()
    assert not model.layers[0].ln1.training
    model = SegVisionTransformer(**SMALL)
    model.init_weights()
    assert model.pos_embed.std() > 0
    bias = model.layers[0].ffn.layers[1].bias
    assert bias.abs().max() < 1e-4 and bias.abs().max() > 0  # MMSeg's tiny FFN biases
    assert torch.all(model.layers[0].attn.attn.out_proj.bias == 0)


def test_segmenter_mask_head_keys_and_output():
    head = SegmenterMaskTransformerHead(
        in_channels=32, channels=32, num_classes=5, num_layers=1, num_heads=4, embed_dims=16
    ).eval()
    keys = shapes(head)
    assert "conv_seg.weight" not in keys
    assert keys["cls_emb"] == (1, 5, 16) and keys["dec_proj.weight"] == (16, 32)
    assert keys["mask_norm.weight"] == (5,) and keys["decoder_norm.weight"] == (16,)
    assert keys["layers.0.attn.attn.in_proj_weight"] == (48, 16)
    assert "patch_proj.bias" not in keys
    head.init_weights()
    assert head([torch.randn(2, 32, 4, 6)]).shape == (2, 5, 4, 6)
