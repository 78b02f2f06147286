"""TIMMBackbone: timm models as backbones, offline."""

from __future__ import annotations

import pytest
import timm
import torch

from vistra.models.backbones.timm_backbone import TIMMBackbone
from vistra.registry import MODELS


def test_features_only_returns_every_level():
    model = TIMMBackbone("resnet18", features_only=True).eval()
    outs = model(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [
        (2, 64, 16, 16),
        (2, 64, 8, 8),
        (2, 128, 4, 4),
        (2, 256, 2, 2),
        (2, 512, 1, 1),
    ]
    assert model.timm_model.feature_info.channels() == [64, 64, 128, 256, 512]


def test_features_only_passes_timm_arguments():
    model = TIMMBackbone("resnet18", features_only=True, out_indices=(2, 4)).eval()
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [128, 512]


def test_classifier_removed_and_keys_under_timm_model():
    model = MODELS.build(dict(type="TIMMBackbone", model_name="resnet18")).eval()
    keys = list(model.state_dict())
    assert all(k.startswith("timm_model.") for k in keys)
    assert "timm_model.conv1.weight" in keys and not any(".fc." in k for k in keys)
    outs = model(torch.randn(2, 3, 32, 32))
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0].shape == (2, 512, 1, 1)  # unpooled last feature map


def test_vit_from_timm_at_a_small_input():
    model = TIMMBackbone("vit_tiny_patch16_224", img_size=32).eval()
    (out,) = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 5, 192)  # class token + 2x2 patches, no pooling
    assert model.timm_model.patch_embed.proj.in_channels == 3


def test_in_channels_reaches_timm():
    model = TIMMBackbone("resnet18", in_channels=1).eval()
    assert model.timm_model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32))[0].shape == (2, 512, 1, 1)


def test_pretrained_without_local_weights_fails_before_any_download():
    with pytest.raises(ValueError, match="checkpoint_path"):
        TIMMBackbone("resnet18", pretrained=True)
    with pytest.raises(TypeError, match="checkpoint_path"):
        TIMMBackbone("resnet18", pretrained="resnet18.pth")


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(ValueError, match="resnet18"):
        TIMMBackbone("resnet18x")


@pytest.fixture
def resnet18_weights(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    return reference, str(path)


def test_pretrained_with_local_checkpoint_loads_and_survives_init(resnet18_weights):
    reference, path = resnet18_weights
    model = TIMMBackbone(
        "resnet18",
        pretrained=True,
        checkpoint_path=path,
        init_cfg=dict(type="Constant", layer="Conv2d", val=0),  # must not clobber the weights
    )
    model.init_weights()
    assert torch.equal(model.timm_model.conv1.weight, reference.conv1.weight)


def test_features_only_with_checkpoint_loads_the_feature_weights(resnet18_weights, tmp_path):
    reference, path = resnet18_weights
    model = TIMMBackbone("resnet18", features_only=True, checkpoint_path=path)
    assert torch.equal(model.timm_model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    partial = {k: v for k, v in reference.state_dict().items() if not k.startswith("layer4.")}
    partial_path = tmp_path / "partial.pth"
    torch.save(partial, partial_path)
    with pytest.raises(RuntimeError, match="layer4"):
        TIMMBackbone("resnet18", features_only=True, checkpoint_path=str(partial_path))


def test_mmseg_variant_defaults_to_features_and_pretrained_weights():
    from vistra.models.backbones.timm_backbone import SegTIMMBackbone
    from vistra.registry import default_scope

    with default_scope("mmseg"):
        assert MODELS.get("TIMMBackbone") is SegTIMMBackbone
        with pytest.raises(Exception, match="would download"):  # MMSeg: pretrained=True
            MODELS.build(dict(type="TIMMBackbone", model_name="resnet18"))
        model = MODELS.build(dict(type="TIMMBackbone", model_name="resnet18", pretrained=False))
    assert len(model.eval()(torch.randn(1, 3, 32, 32))) == 5  # features_only=True
