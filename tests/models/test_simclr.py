"""SimCLR: NT-Xent by hand, MMPretrain's key names, and the global-batch loss of 2 ranks."""

import datetime
import math
import pickle
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vistra.config import Config
from vistra.dist import revert_sync_batchnorm
from vistra.models.selfsup.contrastive_head import ContrastiveHead
from vistra.models.selfsup.nonlinear_neck import NonLinearNeck
from vistra.models.selfsup.simclr import SimCLR, gather_with_grad, pair_similarities
from vistra.registry import MODELS

WORLD = 2
REPO = Path(__file__).resolve().parents[2]


class Flatten(nn.Module):
    """A parameter-free 'backbone': (N, C, 1, 1) images -> a 1-tuple of (N, C) features."""

    def forward(self, x):
        return (x.flatten(1),)


class First(nn.Module):
    """A parameter-free 'neck' passing the features through."""

    def forward(self, x):
        return (x[0],)


class TinyConv(nn.Module):
    """A small backbone without batch statistics, so every sample is computed alone."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        return (torch.relu(self.conv(x)),)


def _head(temperature):
    return ContrastiveHead(loss=dict(type="CrossEntropyLoss"), temperature=temperature)


def _plain(backbone, neck, head):
    return SimCLR(backbone, neck, head, data_preprocessor=dict(type="BaseDataPreprocessor"))


# --------------------------------------------------------------------------- the loss
def test_nt_xent_on_two_images_equals_the_hand_computation():
    # image 0: views a0, b0; image 1: views a1, b1 (unit vectors in 3-D)
    a0, b0 = [1.0, 0.0, 0.0], [0.6, 0.8, 0.0]
    a1, b1 = [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
    t = 0.5
    e = math.exp
    # rows a0, b0, a1, b1; each against its partner (numerator) and the 3 others.
    # dot products: a0.b0 = 0.6, b0.a1 = 0.8, every other pair 0
    by_hand = (
        -math.log(e(0.6 / t) / (e(0.6 / t) + e(0) + e(0)))  # a0: b0 | a1, b1
        - math.log(e(0.6 / t) / (e(0.6 / t) + e(0.8 / t) + e(0)))  # b0: a0 | a1, b1
        - math.log(e(0) / (e(0) + e(0) + e(0.8 / t)))  # a1: b1 | a0, b0
        - math.log(e(0) / (e(0) + e(0) + e(0)))  # b1: a1 | a0, b0
    ) / 4
    model = _plain(Flatten(), First(), _head(t))
    # lengths other than 1 must not matter: projections are L2-normalised
    view1 = torch.tensor([[2.0 * x for x in a0], [0.5 * x for x in a1]]).view(2, 3, 1, 1)
    view2 = torch.tensor([[3.0 * x for x in b0], b1]).view(2, 3, 1, 1)
    loss = model([view1, view2], mode="loss")["loss"]
    assert loss.item() == pytest.approx(by_hand, abs=1e-6)
    assert by_hand == pytest.approx(1.1341, abs=1e-4)  # 0.4715 + 1.0271 + 1.9391 + 1.0986


def _reference_nt_xent(z, temperature):
    """Textbook NT-Xent: softmax over each row of the similarity matrix without its diagonal."""
    z = F.normalize(z, dim=1)
    logits = z @ z.t() / temperature
    logits = logits.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(z)) ^ 1
    return F.cross_entropy(logits, target)


def test_pair_similarities_and_head_match_textbook_nt_xent():
    z = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    pos, neg = pair_similarities(F.normalize(z, dim=1))
    assert pos.shape == (12, 1) and neg.shape == (12, 10)
    loss = _head(0.1).loss(pos, neg)
    assert loss.item() == pytest.approx(_reference_nt_xent(z, 0.1).item(), rel=1e-5)
    with pytest.raises(ValueError, match="even number"):
        pair_similarities(z[:5])


def test_gather_without_process_group_is_the_identity():
    z = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(z) is z


# --------------------------------------------------------------------------- the model
def test_state_dict_keys_are_mmpretrains():
    model = MODELS.build(
        dict(
            type="SimCLR",
            data_preprocessor=dict(type="SelfSupDataPreprocessor", mean=[0.0] * 3, std=[1.0] * 3),
            backbone=dict(type="ResNet", depth=18, norm_cfg=dict(type="SyncBN")),
            neck=dict(
                type="NonLinearNeck",
                in_channels=512,
                hid_channels=64,
                out_channels=16,
                num_layers=2,
                with_avg_pool=True,
            ),
            head=dict(type="ContrastiveHead", loss=dict(type="CrossEntropyLoss"), temperature=0.1),
        )
    )
    keys = model.state_dict().keys()
    neck = sorted(k for k in keys if k.startswith("neck."))
    bn = ["bias", "num_batches_tracked", "running_mean", "running_var", "weight"]
    assert neck == sorted(
        ["neck.fc0.weight", "neck.fc1.weight"] + [f"neck.bn{i}.{p}" for i in (0, 1) for p in bn]
    )
    assert not any(k.startswith("head.") for k in keys)  # the head has no parameters
    assert "backbone.conv1.weight" in keys and "backbone.layer4.1.bn2.weight" in keys
    assert model.state_dict()["neck.fc0.weight"].shape == (64, 512)
    assert model.state_dict()["neck.fc1.weight"].shape == (16, 64)


def test_config_model_has_mmpretrains_parameter_count():
    cfg = Config.fromfile(REPO / "configs/simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py")
    model = MODELS.build(cfg.model)
    # ResNet-50 without its fc (23,508,032) + fc0, bn0, fc1, bn1 of the neck (4,460,800)
    assert sum(p.numel() for p in model.parameters()) == 27_968_832
    assert model.neck.fc0.bias is None and isinstance(model.neck.bn0, nn.SyncBatchNorm)
    assert model.head.temperature == 0.1


def test_nonlinear_neck_layout_options():
    neck = NonLinearNeck(8, 6, 4, num_layers=3, with_bias=True, with_last_bn=False)
    names = dict(neck.named_parameters())
    assert names["fc0.weight"].shape == (6, 8) and "fc0.bias" in names
    assert names["fc1.weight"].shape == (6, 6) and "fc1.bias" in names
    assert names["fc2.weight"].shape == (4, 6) and "fc2.bias" not in names  # with_last_bias
    assert "bn2.weight" not in names and "bn1.weight" in names
    frozen = NonLinearNeck(8, 6, 4, with_last_bn_affine=False, norm_cfg=dict(type="BN1d"))
    assert frozen.bn1.weight is None and frozen.bn0.weight is not None
    out = frozen((torch.randn(5, 8, 3, 3),))
    assert len(out) == 1 and out[0].shape == (5, 4)
    with pytest.raises(ValueError, match="one backbone output"):
        frozen((torch.randn(5, 8, 3, 3), torch.randn(5, 8, 3, 3)))


def test_neck_runs_after_syncbn_was_reverted_for_a_single_process_run():
    neck = NonLinearNeck(8, 6, 4)  # SyncBN by default, as in the configs
    neck = revert_sync_batchnorm(neck)
    assert not isinstance(neck.bn0, nn.SyncBatchNorm)
    neck.init_weights()
    assert torch.equal(neck.bn1.weight, torch.ones(4))  # Constant(val=1) init of the BNs
    out = neck((torch.randn(5, 8, 2, 2),))[0]
    assert out.shape == (5, 4)
    # training-mode BN: every output channel has zero mean over the batch
    assert torch.allclose(out.mean(0), torch.zeros(4), atol=1e-5)


def test_loss_and_tensor_modes_of_a_resnet_simclr():
    torch.manual_seed(0)
    model = _plain(
        dict(type="ResNet", depth=18),
        dict(type="NonLinearNeck", in_channels=512, hid_channels=32, out_channels=8),
        _head(0.1),
    )
    model.init_weights()
    views = [torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)]
    losses = model(views, mode="loss")
    assert set(losses) == {"loss"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert model.backbone.conv1.weight.grad is not None
    feats = model(views, mode="tensor")  # the backbone's features of the first view
    assert isinstance(feats, tuple) and feats[0].shape == (3, 512, 1, 1)
    with pytest.raises(ValueError, match="exactly 2 views"):
        model(views[:1], mode="loss")
    with pytest.raises(ValueError, match="exactly 2 views"):
        model(views[0], mode="loss")
    with pytest.raises(ValueError, match="predict"):
        model(views, mode="predict")


def test_train_step_through_the_selfsup_preprocessor():
    model = MODELS.build(
        dict(
            type="SimCLR",
            data_preprocessor=dict(mean=[127.5] * 3, std=[50.0] * 3, to_rgb=True),
            backbone=dict(type="ResNet", depth=18),
            neck=dict(type="NonLinearNeck", in_channels=512, hid_channels=16, out_channels=8),
            head=dict(type="ContrastiveHead", loss=dict(type="CrossEntropyLoss")),
        )
    )
    assert type(model.data_preprocessor).__name__ == "SelfSupDataPreprocessor"
    views = [torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8) for _ in range(2)]
    data = model.data_preprocessor({"inputs": views, "data_samples": None}, training=True)
    assert isinstance(data["inputs"], list) and data["inputs"][0].dtype == torch.float32
    assert torch.isfinite(model(**data, mode="loss")["loss"])


# --------------------------------------------------------------------------- two ranks
SEED = 0
BATCH = 4  # images in the global batch (8 projections)


def make_model() -> SimCLR:
    torch.manual_seed(SEED)
    # GroupNorm instead of BN: no batch statistics, so a split batch computes the same
    # features as the whole one and only the loss couples the ranks (SyncBN needs CUDA)
    neck = NonLinearNeck(6, 16, 8, with_last_bn=False, norm_cfg=dict(type="GN", num_groups=4))
    model = _plain(TinyConv(), neck, _head(0.2))
    model.init_weights()
    return model


def make_views() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(BATCH, 3, 8, 8, generator=g) for _ in range(2)]


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def dist_worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        model = DistributedDataParallel(make_model())
        views = make_views()
        results = {}
        # an even split (2 + 2 images), then an uneven one (3 + 1: a short last batch)
        for name, bounds in (("even", (0, 2, 4)), ("uneven", (0, 3, 4))):
            lo, hi = bounds[rank], bounds[rank + 1]
            model.zero_grad()
            loss = model([v[lo:hi] for v in views], mode="loss")["loss"]
            loss.backward()  # DDP averages the parameter gradients over the ranks
            results[name] = (loss.item(), grads(model.module))
        with open(f"{out_dir}/rank{rank}.pkl", "wb") as f:
            pickle.dump(results, f)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dist
@pytest.mark.timeout(180)
def test_two_ranks_give_the_loss_and_gradients_of_one_process_with_the_whole_batch(tmp_path):
    mp.spawn(dist_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]

    single = make_model()
    loss = single(make_views(), mode="loss")["loss"]
    loss.backward()
    expected = grads(single)

    assert all(g.abs().max() > 1e-3 for g in expected.values())  # gradients worth comparing
    # the negatives of every rank were seen: with only the local half the loss differs
    half = make_model()([v[:2] for v in make_views()], mode="loss")["loss"]
    assert abs(half.item() - loss.item()) > 1e-3

    for result in ranks:
        for name in ("even", "uneven"):
            got_loss, got_grads = result[name]
            assert got_loss == pytest.approx(loss.item(), abs=1e-6), name
            assert got_grads.keys() == expected.keys()
            for key, grad in expected.items():
                assert torch.allclose(got_grads[key], grad, atol=1e-7, rtol=1e-4), (name, key)
