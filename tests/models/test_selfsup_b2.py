"""Group B2 of issue #18 (NPID, ODC, DeepCluster): what the upstream oracle cannot check --
the memory banks' updates, the torch k-means, the sampler, the hooks' effects and the
losses of the clustering algorithms (upstream's need CUDA or hook-made labels)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vistra.data.samplers_deepcluster import DeepClusterSampler
from vistra.data.structures import DataSample
from vistra.data.transforms.selfsup_formatting import ValueData
from vistra.engine.hooks.clustering_hooks import DeepClusterHook, ODCHook
from vistra.models.selfsup.clustering import Kmeans, kmeans, preprocess_features
from vistra.models.selfsup.memories import AliasMethod, ODCMemory, SimpleMemory
from vistra.registry import MODELS, default_scope

# a narrow ResNet-18 (64 output channels) keeps each model test well under a second
BACKBONE = dict(
    type="ResNet", depth=18, stem_channels=8, base_channels=8, out_indices=[4],
    norm_cfg=dict(type="BN"),
)  # fmt: skip
PRE = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _build(cfg: dict):
    with default_scope("mmselfsup"):
        return MODELS.build(cfg)


def _samples(n: int, **fields) -> list[DataSample]:
    out = []
    for i in range(n):
        s = DataSample()
        s.sample_idx = ValueData(value=torch.tensor([i]))
        for k, v in fields.items():
            setattr(s, k, ValueData(**{v[0]: torch.tensor([v[1][i]])}))
        out.append(s)
    return out


def test_alias_method_samples_its_distribution():
    torch.manual_seed(0)
    alias = AliasMethod(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert set(dict(alias.named_buffers())) == {"prob", "alias"}
    draws = alias.draw(40000)
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.01)
    uniform = AliasMethod(torch.ones(10))
    assert (uniform.prob == 1).all() and uniform.draw(5).max() < 10
    with pytest.raises(ValueError, match="n > 0"):
        uniform.draw(0)


def test_simple_memory_update_is_normalised_running_average():
    mem = SimpleMemory(length=6, feat_dim=4, momentum=0.5)
    old = mem.feature_bank.clone()
    feat = torch.randn(2, 4)
    mem.update(torch.tensor([1, 3]), feat)
    expect = torch.nn.functional.normalize(
        0.5 * old[[1, 3]] + 0.5 * torch.nn.functional.normalize(feat)
    )
    assert torch.allclose(mem.feature_bank[[1, 3]], expect, atol=1e-6)
    assert torch.equal(mem.feature_bank[[0, 2, 4, 5]], old[[0, 2, 4, 5]])


def test_npid_loss_runs_and_ensure_neg_excludes_positives():
    model = _build(
        dict(
            type="NPID", neg_num=8, ensure_neg=True, data_preprocessor=PRE, backbone=BACKBONE,
            neck=dict(type="LinearNeck", in_channels=64, out_channels=16),
            head=dict(type="ContrastiveHead", loss=dict(type="CrossEntropyLoss"), temperature=0.07),
            memory_bank=dict(type="SimpleMemory", length=4, feat_dim=16, momentum=0.5),
        )
    )  # fmt: skip
    neg = model._negatives(torch.arange(4)).view(4, 8)
    assert not (neg == torch.arange(4)[:, None]).any()
    before = model.memory_bank.feature_bank.clone()
    losses = model([torch.randn(4, 3, 32, 32)], _samples(4), mode="loss")
    assert math.isfinite(losses["loss"].item())
    assert not torch.equal(before, model.memory_bank.feature_bank)


def test_kmeans_separates_blobs_and_is_seeded():
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 3, generator=gen) - 5, torch.randn(20, 3, generator=gen) + 5])
    labels, centroids, loss = kmeans(x, 2, seed=1)
    assert len(set(labels[:20].tolist())) == 1 and len(set(labels[20:].tolist())) == 1
    assert labels[0] != labels[-1] and centroids.shape == (2, 3) and loss > 0
    assert torch.equal(kmeans(x, 2, seed=1)[0], labels)
    reduced = preprocess_features(torch.randn(30, 8), pca_dim=4)
    assert reduced.shape == (30, 4)
    assert torch.allclose(reduced.norm(dim=1), torch.ones(30), atol=1e-4)
    algo = Kmeans(k=3, pca_dim=-1)
    algo.cluster(x.numpy())
    assert algo.labels.dtype == np.int64 and algo.labels.shape == (40,)
    with pytest.raises(ValueError, match="k <="):
        kmeans(x, 41)


def _odc_memory() -> ODCMemory:
    mem = ODCMemory(length=8, feat_dim=2, momentum=0.5, num_classes=3, min_cluster=2)
    feats = np.array(
        [[1, 0], [1, 0.1], [0, 1], [0.1, 1], [-1, 0], [-1, 0.1], [-1, -0.1], [1, -0.1]], np.float32
    )
    mem.init_memory(feats, np.array([0, 0, 1, 1, 2, 2, 2, 0]))
    return mem


def test_odc_memory_update_and_small_clusters():
    mem = _odc_memory()
    assert torch.allclose(mem.centroids[2], mem.feature_bank[4:7].mean(0))
    # moving sample 0 towards cluster 1's direction relabels it
    ratio = mem.update_samples_memory(torch.tensor([0]), torch.tensor([[-1.0, 10.0]]))
    assert ratio.item() == 1.0 and mem.label_bank[0] == 1
    mem.min_cluster = 3  # clusters 0 (2 samples) and 1 (3) -> 0 is small
    mem.deal_with_small_clusters()
    counts = torch.bincount(mem.label_bank, minlength=3)
    assert (counts > 0).all() and counts.sum() == 8
    fresh = ODCMemory(length=4, feat_dim=2, momentum=0.5, num_classes=2, min_cluster=1)
    with pytest.raises(RuntimeError, match="not initialised"):
        fresh.update_samples_memory(torch.tensor([0]), torch.ones(1, 2))


def _odc_model():
    return _build(
        dict(
            type="ODC", data_preprocessor=PRE, backbone=BACKBONE,
            neck=dict(type="ODCNeck", in_channels=64, hid_channels=8, out_channels=2,
                      norm_cfg=dict(type="BN")),
            head=dict(type="ClsHead", loss=dict(type="CrossEntropyLoss"), in_channels=2,
                      num_classes=3),
            memory_bank=dict(type="ODCMemory", length=8, feat_dim=2, momentum=0.5,
                             num_classes=3, min_cluster=1),
        )
    )  # fmt: skip


def test_odc_loss_and_hook_reweighting():
    model = _odc_model().eval()
    mem = _odc_memory()
    model.memory_bank.init_memory(mem.feature_bank.numpy(), mem.label_bank.numpy())
    losses = model([torch.randn(4, 3, 32, 32)], _samples(4), mode="loss")
    assert set(losses) == {"loss", "change_ratio"} and math.isfinite(losses["loss"].item())
    runner = SimpleNamespace(model=model, iter=0, epoch=0, rank=0, work_dir=".")
    ODCHook(10, 1, 50, reweight=True, reweight_pow=0.5).after_train_iter(runner, 0)
    counts = torch.bincount(model.memory_bank.label_bank, minlength=3).float()
    expect = counts.pow(-0.5) / counts.pow(-0.5).sum()
    assert torch.allclose(model.loss_weight, expect, atol=1e-6)
    assert model.head.loss.class_weight == model.loss_weight.tolist()


def test_deepcluster_loss_is_weighted_cross_entropy():
    model = _build(
        dict(
            type="DeepCluster", data_preprocessor=PRE, backbone=BACKBONE,
            neck=dict(type="AvgPool2dNeck"),
            head=dict(type="ClsHead", loss=dict(type="CrossEntropyLoss"), in_channels=64,
                      num_classes=5),
        )
    ).eval()  # fmt: skip
    assert set(model.state_dict()) >= {"loss_weight", "head.fc_cls.weight"}
    x = torch.randn(4, 3, 32, 32)
    labels = [0, 1, 4, 2]
    samples = _samples(4, pseudo_label=("clustering_label", labels))
    loss = model([x], samples, mode="loss")["loss"]
    logits = model.head.logits(model.neck(model.backbone(x)))[0]
    ref = torch.nn.functional.cross_entropy(logits, torch.tensor(labels)) / 5
    assert torch.allclose(loss, ref, atol=1e-6)
    with pytest.raises(KeyError, match="clustering_label"):
        model([x], _samples(4), mode="loss")


class _Labelled(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n, self.labels = n, None

    def __len__(self) -> int:
        return self.n

    def assign_labels(self, labels):
        self.labels = labels


def test_deepcluster_hook_assigns_labels_and_inits_memory(tmp_path):
    model = _odc_model()
    images = [
        dict(inputs=[torch.rand(4, 3, 32, 32) * 255], data_samples=_samples(4)) for _ in range(2)
    ]
    loader = SimpleNamespace(dataset=list(range(8)), __iter__=None)
    loader = type("L", (), {"dataset": list(range(8)), "__iter__": lambda self: iter(images)})()
    train = SimpleNamespace(dataset=_Labelled(8), sampler=DeepClusterSampler(list(range(8))))
    runner = SimpleNamespace(
        model=model, train_dataloader=train, work_dir=str(tmp_path), epoch=0, rank=0
    )
    hook = DeepClusterHook(
        extract_dataloader=loader, clustering=dict(type="Kmeans", k=3, pca_dim=-1),
        unif_sampling=True, reweight=True, reweight_pow=0.5, init_memory=True,
    )  # fmt: skip
    hook.before_train(runner)
    assert len(train.dataset.labels) == 8 and (tmp_path / "cluster_epoch_0.npy").exists()
    assert model.memory_bank.initialized and train.sampler.unif_sampling_flag
    assert torch.isclose(model.loss_weight.sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="clustering type"):
        DeepClusterHook(loader, dict(type="PIC"), False, False, 0.5)


def test_deepcluster_sampler_orders():
    sampler = DeepClusterSampler(list(range(6)), seed=0, replace=True)
    first = list(sampler)
    assert len(first) == 6 and first == list(sampler)  # a pure function of (seed, epoch)
    sampler.set_uniform_indices([0, 0, 0, 0, 1, 1], 2)
    uniform = list(sampler)
    assert len(uniform) == 6 and set(uniform) & {4, 5} and set(uniform) & {0, 1, 2, 3}
    assert list(sampler) == first  # the uniform order serves one epoch


def test_multi_cls_head_keys_and_losses():
    head = _build(
        dict(type="MultiClsHead", pool_type="adaptive", in_indices=[0, 4], num_classes=7,
             norm_cfg=dict(type="BN", affine=False))
    )  # fmt: skip
    keys = set(head.state_dict())
    assert {"fcs.0.weight", "fcs.1.bias", "norms.0.running_mean", "norms.1.running_var"} <= keys
    feats = (torch.randn(2, 64, 16, 16), torch.randn(2, 2048, 2, 2))
    samples = [DataSample() for _ in range(2)]
    for s in samples:
        s.gt_label = torch.tensor([3])
    losses = head.loss(feats, samples)
    assert set(losses) == {"loss.1", "loss.5"}
    with pytest.raises(ValueError, match="with_last_layer_unpool"):
        _build(dict(type="MultiClsHead", with_last_layer_unpool=True))


def test_random_rotation_draws_its_angle_from_torch():
    from vistra.data.transforms.selfsup_rotation import RandomRotation

    img = np.arange(25, dtype=np.uint8).reshape(5, 5, 1).repeat(3, axis=2)
    same = RandomRotation(degrees=0)(dict(img=img.copy()))["img"]
    assert np.array_equal(same, img)
    turned = RandomRotation(degrees=(90, 90))(dict(img=img.copy()))["img"]
    assert np.array_equal(turned, np.rot90(img, k=-1))  # positive angles turn clockwise
    with pytest.raises(ValueError, match="interpolation"):
        RandomRotation(degrees=2, interpolation="lanczos")
