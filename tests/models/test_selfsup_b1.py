"""Group B1 of the self-supervised zoo (MoCo v3, SwAV, RotationPred, RelativeLoc): what the
upstream oracle cannot see -- the pretext transforms' views and labels, the data
preprocessors' regrouping, Sinkhorn-Knopp's marginals, SwAV's queue and hook, the fixed
MoCo v3 ViT embedding and the packages' momentum conventions, and clear errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.data.transforms.selfsup_formatting import ValueData
from vistra.data.transforms.selfsup_pretext import (
    RandomPatchWithLabels,
    RotationWithLabels,
    SelfSupRandomCrop,
    rotate_clockwise,
)
from vistra.engine.hooks.swav_hook import SwAVHook
from vistra.models.selfsup.mocov3 import (
    MoCoV3,
    MoCoV3Head,
    MoCoV3ViT,
    SelfSupMoCoV3,
    SelfSupMoCoV3ViT,
)
from vistra.models.selfsup.relative_loc import RelativeLocDataPreprocessor
from vistra.models.selfsup.rotation_pred import RotationPred, RotationPredDataPreprocessor
from vistra.models.selfsup.swav import SwAV, SwAVHead, SwAVLoss, distributed_sinkhorn
from vistra.registry import MODELS, TRANSFORMS, default_scope

TINY_VIT = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)


class TinyConv(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x):
        return (torch.relu(self.bn(self.conv(x))),)


# --------------------------------------------------------------------------- transforms
def test_rotation_with_labels_turns_clockwise():
    img = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    out = RotationWithLabels()({"img": img})
    assert [v.shape for v in out["img"]] == [(2, 2, 3)] * 4
    # clockwise: the top-left pixel moves to the top-right corner
    assert (out["img"][1][0, 1] == img[0, 0]).all()
    assert (out["img"][2] == img[::-1, ::-1]).all()
    assert out["rot_label"].tolist() == [0, 1, 2, 3]
    assert rotate_clockwise(np.zeros((4, 6, 3), np.uint8), 1).shape == (4, 6, 3)


def test_random_patch_with_labels_views_and_labels():
    np.random.seed(0)
    img = np.random.randint(0, 255, (90, 90, 3), dtype=np.uint8)
    out = RandomPatchWithLabels()({"img": img})
    assert len(out["img"]) == 9
    assert {v.shape for v in out["img"]} == {(9, 9, 3)}  # cells of 30 px less the jitter 21
    assert out["patch_label"].tolist() == [list(range(8))]
    assert out["patch_box"].shape == (1, 9, 4)
    assert out["unpatched_img"].shape == (1, 90, 90, 3)
    # the centre patch comes first and lies inside the centre cell
    box = out["patch_box"][0, 4]
    assert (out["img"][0] == img[box[1] : box[3] + 1, box[0] : box[2] + 1]).all()
    with pytest.raises(ValueError, match="at least 66"):
        RandomPatchWithLabels()({"img": np.zeros((60, 60, 3), np.uint8)})


def test_mmselfsup_random_crop_takes_size():
    with default_scope("mmselfsup"):
        crop = TRANSFORMS.build(dict(type="RandomCrop", size=5))
    assert isinstance(crop, SelfSupRandomCrop)
    assert crop({"img": np.zeros((8, 9, 3), np.uint8)})["img"].shape == (5, 5, 3)
    with pytest.raises(ValueError, match="padding_mode"):
        SelfSupRandomCrop(5, padding_mode="wrap")


# --------------------------------------------------------------------------- preprocessors
def test_rotation_preprocessor_interleaves_the_rotations():
    pre = RotationPredDataPreprocessor()
    views = [torch.full((2, 3, 4, 4), float(k)) for k in range(4)]
    out = pre({"inputs": views, "data_samples": None})["inputs"]
    assert len(out) == 1 and out[0].shape == (8, 3, 4, 4)
    assert out[0][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="4 views"):
        pre({"inputs": views[:2], "data_samples": None})


def test_relative_loc_preprocessor_pairs_neighbours_with_the_centre():
    pre = RelativeLocDataPreprocessor()
    views = [torch.full((2, 3, 4, 4), float(k)) for k in range(9)]
    neighbours, centre = pre({"inputs": views, "data_samples": None})["inputs"]
    assert neighbours.shape == centre.shape == (16, 3, 4, 4)
    assert neighbours[:8, 0, 0, 0].tolist() == list(range(1, 9))
    assert (centre == 0).all()


def test_rotation_pred_needs_its_pseudo_labels():
    with default_scope("mmselfsup"):
        model = RotationPred(
            backbone=TinyConv(),
            head=dict(type="ClsHead", loss=dict(type="CrossEntropyLoss"), with_avg_pool=True,
                      in_channels=8, num_classes=4),
        )  # fmt: skip
    x = [torch.randn(8, 3, 8, 8)]
    samples = [DataSample() for _ in range(2)]
    with pytest.raises(KeyError, match="pseudo_label.rot_label"):
        model.loss(x, samples)
    for s in samples:
        s.pseudo_label = ValueData(rot_label=torch.arange(4))
    assert torch.isfinite(model.loss(x, samples)["loss"])


# --------------------------------------------------------------------------- SwAV
def test_sinkhorn_gives_equipartitioned_assignments():
    scores = torch.randn(12, 5)
    q = distributed_sinkhorn(scores, 50, 1, 0.5)
    assert torch.allclose(q.sum(dim=1), torch.ones(12), atol=1e-5)
    assert torch.allclose(q.sum(dim=0), torch.full((5,), 12 / 5), atol=1e-3)


def test_swav_loss_fills_and_uses_its_queue():
    loss = SwAVLoss(feat_dim=4, num_crops=[2, 1], num_prototypes=6)
    loss.queue = torch.zeros(2, 4, 4)
    x = nn.functional.normalize(torch.randn(6, 4), dim=1)  # 3 crops of 2 images
    loss(x)
    assert torch.equal(loss.queue[0, :2], x[:2]) and torch.equal(loss.queue[1, :2], x[2:4])
    assert not loss.use_queue  # the last rows are still empty
    loss(x)
    assert torch.equal(loss.queue[0, 2:], x[:2])
    loss(x)
    assert loss.use_queue
    # the prototypes are unit rows after every call
    assert torch.allclose(loss.prototypes.weight.norm(dim=1), torch.ones(6), atol=1e-6)
    with pytest.raises(ValueError, match="crops_for_assign"):
        SwAVLoss(feat_dim=4, crops_for_assign=[3], num_crops=[2])


def test_swav_groups_crops_by_size():
    sizes = []

    class Spy(TinyConv):
        def forward(self, x):
            sizes.append(tuple(x.shape))
            return super().forward(x)

    model = SwAV(
        backbone=Spy(),
        neck=dict(type="SwAVNeck", in_channels=8, hid_channels=0, out_channels=4),
        head=dict(type="SwAVHead", loss=dict(type="SwAVLoss", feat_dim=4, num_crops=[2, 3],
                                             num_prototypes=5)),
    )  # fmt: skip
    views = [torch.randn(2, 3, 8, 8)] * 2 + [torch.randn(2, 3, 4, 4)] * 3
    assert torch.isfinite(model.loss(views)["loss"])
    assert sizes == [(4, 3, 8, 8), (6, 3, 4, 4)]


def _runner(model, tmp_path, epoch=0, it=0):
    return SimpleNamespace(model=model, work_dir=str(tmp_path), world_size=1, rank=0,
                           device=torch.device("cpu"), epoch=epoch, iter=it)  # fmt: skip


def test_swav_hook_queue_and_frozen_prototypes(tmp_path):
    model = nn.Module()
    model.head = SwAVHead(loss=dict(type="SwAVLoss", feat_dim=4, num_prototypes=5))
    hook = SwAVHook(batch_size=4, epoch_queue_starts=1, feat_dim=4, queue_length=10,
                    frozen_layers_cfg=dict(prototypes=2))  # fmt: skip
    hook.before_run(_runner(model, tmp_path))
    assert hook.queue_length == 8  # a multiple of the global batch
    hook.before_train_epoch(_runner(model, tmp_path, epoch=0))
    assert model.head.loss_fn.queue is None
    hook.before_train_epoch(_runner(model, tmp_path, epoch=1))
    assert model.head.loss_fn.queue.shape == (2, 8, 4)
    weight = model.head.loss_fn.prototypes.weight
    hook.before_train_iter(_runner(model, tmp_path, it=0), 0)
    assert not weight.requires_grad
    hook.before_train_iter(_runner(model, tmp_path, it=2), 0)
    assert weight.requires_grad
    model.head.loss_fn.queue.fill_(3.0)
    hook.after_train_epoch(_runner(model, tmp_path, epoch=1))
    fresh = SwAVHook(batch_size=4, feat_dim=4, queue_length=10)
    model.head.loss_fn.queue = None
    fresh.before_run(_runner(model, tmp_path))
    assert (model.head.loss_fn.queue == 3.0).all()


# --------------------------------------------------------------------------- MoCo v3
def test_mocov3_vit_fixed_embedding_and_frozen_projection():
    vit = MoCoV3ViT(arch=TINY_VIT, img_size=32, patch_size=16, stop_grad_conv1=True)
    vit.init_weights()
    assert not vit.pos_embed.requires_grad
    assert not vit.patch_embed.projection.weight.requires_grad
    assert torch.equal(vit.pos_embed[0, 0], torch.zeros(32))  # the class token's row
    assert vit(torch.randn(2, 3, 32, 32))[0].shape == (2, 32)
    assert MoCoV3ViT.arch_zoo["mocov3-small"]["embed_dims"] == 384


def test_mmselfsup_mocov3_vit_returns_patch_map_and_class_token():
    vit = SelfSupMoCoV3ViT(arch=TINY_VIT, img_size=32, patch_size=16)
    patch, cls = vit(torch.randn(2, 3, 32, 32))[0]
    assert patch.shape == (2, 32, 2, 2) and cls.shape == (2, 32)


def test_mocov3_momentum_conventions():
    parts = dict(
        backbone=TinyConv(),
        neck=dict(type="MoCoV2Neck", in_channels=8, hid_channels=8, out_channels=4),
        head=dict(type="MoCoV3Head", loss=dict(type="CrossEntropyLoss"), predictor=dict(
            type="MoCoV2Neck", in_channels=4, hid_channels=8, out_channels=4,
            with_avg_pool=False)),
    )  # fmt: skip
    assert MoCoV3(**parts).momentum_encoder.momentum == pytest.approx(0.01)
    assert SelfSupMoCoV3(**parts).momentum_encoder.momentum == pytest.approx(0.01)
    with pytest.raises(ValueError, match="base_momentum"):
        SelfSupMoCoV3(**parts, base_momentum=1.0)


def test_mocov3_head_positives_are_the_diagonal():
    head = MoCoV3Head(
        predictor=dict(type="MoCoV2Neck", in_channels=4, hid_channels=8, out_channels=4,
                       with_avg_pool=False),
        loss=dict(type="CrossEntropyLoss"), temperature=0.5,
    )  # fmt: skip
    q, k = torch.randn(3, 4), torch.randn(3, 4)
    pred = nn.functional.normalize(head.predictor([q])[0], dim=1)
    logits = pred @ nn.functional.normalize(k, dim=1).t() / 0.5
    expected = nn.functional.cross_entropy(logits, torch.arange(3))
    assert torch.allclose(head.loss(q, k), expected, atol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        MODELS.build(dict(type="MoCoV3Head", predictor=dict(type="MoCoV2Neck", in_channels=4,
                          hid_channels=4, out_channels=4), loss=dict(type="CrossEntropyLoss"),
                          temperature=0))  # fmt: skip
