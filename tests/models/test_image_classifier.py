"""ImageClassifier: modes, parameter count, keys, train_cfg augments, state-dict round trip."""

import io

import pytest
import torch

from vistra.data.preprocessor import ClsDataPreprocessor
from vistra.data.structures import DataSample
from vistra.registry import MODELS


def _cfg(depth=18, num_classes=10, **extra):
    cfg = dict(
        type="ImageClassifier",
        backbone=dict(type="ResNet_CIFAR" if depth == 18 else "ResNet", depth=depth),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(
            type="LinearClsHead", num_classes=num_classes, in_channels=512 if depth == 18 else 2048
        ),
        data_preprocessor=dict(mean=[125.3, 123.0, 113.9], std=[63.0, 62.1, 66.7], to_rgb=False),
    )
    cfg.update(extra)
    return cfg


def _batch():
    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(2)]
    return {
        "inputs": imgs,
        "data_samples": [DataSample().set_gt_label(3), DataSample().set_gt_label(7)],
    }


def test_resnet50_linear_head_parameter_count_is_torchvisions():
    model = MODELS.build(_cfg(depth=50, num_classes=1000))
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    keys = model.state_dict().keys()
    assert {k.split(".")[0] for k in keys} == {"backbone", "head"}
    assert "head.fc.weight" in keys and "backbone.layer4.2.bn3.running_var" in keys


def test_loss_predict_and_tensor_modes():
    torch.manual_seed(0)
    model = MODELS.build(_cfg())
    model.init_weights()
    assert isinstance(model.data_preprocessor, ClsDataPreprocessor)
    data = model.data_preprocessor(_batch(), training=True)
    assert data["inputs"].shape == (2, 3, 32, 32)
    losses = model(**data, mode="loss")
    assert set(losses) == {"loss"} and losses["loss"].requires_grad
    losses["loss"].backward()
    assert model.head.fc.weight.grad is not None
    model.eval()
    preds = model.val_step(_batch())
    assert len(preds) == 2 and preds[0].pred_score.shape == (10,)
    assert preds[1].gt_label.tolist() == [7]
    logits = model(data["inputs"], mode="tensor")
    assert logits.shape == (2, 10)
    assert torch.allclose(preds[0].pred_score, logits.softmax(dim=1)[0], atol=1e-6)
    feats = model.extract_feat(data["inputs"], stage="backbone")
    assert isinstance(feats, tuple) and feats[-1].shape == (2, 512, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        model(data["inputs"], mode="train")


def test_train_cfg_augments_move_into_the_preprocessor():
    cfg = _cfg(
        train_cfg=dict(augments=[dict(type="Mixup", alpha=0.8), dict(type="CutMix", alpha=1.0)])
    )
    cfg["data_preprocessor"]["num_classes"] = 10
    model = MODELS.build(cfg)
    augments = model.data_preprocessor.batch_augments.augments
    assert [type(a).__name__ for a in augments] == ["Mixup", "CutMix"]
    data = model.data_preprocessor(_batch(), training=True)
    assert data["data_samples"][0].gt_score.shape == (10,)
    assert torch.isfinite(model(**data, mode="loss")["loss"])


def test_state_dict_round_trip_is_strict_and_exact():
    torch.manual_seed(0)
    model = MODELS.build(_cfg())
    model.init_weights()
    model.train()
    model(**model.data_preprocessor(_batch(), training=True), mode="loss")  # move BN stats
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = MODELS.build(_cfg())
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    model.eval()
    fresh.eval()
    x = model.data_preprocessor(_batch())["inputs"]
    assert torch.equal(model(x), fresh(x))


def test_a_list_of_necks_is_a_sequential_as_in_mmengine():
    # MMPretrain's HRNet configs: neck=[dict(type='HRFuseScales', ...), dict(type='GlobalAveragePooling')]
    import torch

    from vistra.registry import MODELS

    model = MODELS.build(
        dict(
            type="ImageClassifier",
            backbone=dict(type="ResNet", depth=18, out_indices=(2, 3)),
            neck=[dict(type="GlobalAveragePooling")],
            head=dict(type="LinearClsHead", num_classes=3, in_channels=512),
        )  # fmt: skip
    )
    assert isinstance(model.neck, torch.nn.Sequential) and isinstance(
        model.neck[0], torch.nn.Module
    )
    assert model(torch.randn(2, 3, 32, 32), mode="tensor").shape == (2, 3)
    with pytest.raises(Exception, match=r"model.neck\[1\]"):
        MODELS.build(dict(type="ImageClassifier", backbone=dict(type="ResNet", depth=18),
                          neck=[dict(type="GlobalAveragePooling"), dict(type="NoSuchNeck")],
                          head=dict(type="LinearClsHead", num_classes=3, in_channels=512)))  # fmt: skip
