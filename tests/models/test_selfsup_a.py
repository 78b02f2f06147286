"""Group A of the self-supervised zoo (MoCo v1/v2, BYOL, SimSiam, Barlow Twins, DenseCL):
what the upstream oracle cannot see -- queue updates, shuffle BN in one process, the two
packages' momentum conventions, the SimSiam hook, RandomSolarize and clear errors."""

from __future__ import annotations

import datetime
import math
import pickle
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from vistra.data.transforms.selfsup_solarize import RandomSolarize
from vistra.engine.hooks.simsiam_hook import SimSiamHook
from vistra.models.selfsup.byol import BYOL, SelfSupBYOL
from vistra.models.selfsup.densecl import DenseCL, DenseCLNeck, dense_positives
from vistra.models.selfsup.latent_heads import LatentCrossCorrelationHead
from vistra.models.selfsup.moco import (
    MoCo,
    MoCoV2Neck,
    SelfSupMoCo,
    batch_shuffle_ddp,
    batch_unshuffle_ddp,
    concat_all_gather,
    enqueue,
)
from vistra.models.selfsup.similarity_losses import CrossCorrelationLoss, off_diagonal
from vistra.registry import MODELS, default_scope

PLAIN = dict(type="BaseDataPreprocessor")
HEAD = dict(type="ContrastiveHead", loss=dict(type="CrossEntropyLoss"), temperature=0.2)


class TinyConv(nn.Module):
    """A small backbone with BatchNorm (shuffle BN matters) and one output map."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x):
        return (torch.relu(self.bn(self.conv(x))),)


def _moco(cls=MoCo, **kwargs) -> MoCo:
    neck = MoCoV2Neck(8, 16, 4)
    return cls(TinyConv(), neck, HEAD, queue_len=8, feat_dim=4, data_preprocessor=PLAIN, **kwargs)


def test_gather_is_the_identity_and_shuffle_is_undone_in_one_process():
    x = torch.arange(12.0).view(6, 2)
    assert concat_all_gather(x) is x
    torch.manual_seed(3)
    shuffled, idx_unshuffle = batch_shuffle_ddp(x)
    torch.manual_seed(3)
    perm = torch.randperm(6)  # the same draw as upstream's, on the CPU default generator
    torch.testing.assert_close(shuffled, x[perm])
    torch.testing.assert_close(batch_unshuffle_ddp(shuffled, idx_unshuffle), x)


def test_enqueue_overwrites_the_oldest_keys_and_wraps():
    queue, ptr = torch.zeros(2, 6), torch.zeros(1, dtype=torch.long)
    for step in range(4):
        enqueue(queue, ptr, torch.full((2, 2), float(step + 1)))
    # 4 batches of 2 into 6 columns: the 4th overwrote columns 0-1
    assert queue[0].tolist() == [4, 4, 2, 2, 3, 3] and int(ptr) == 2
    with pytest.raises(ValueError, match="multiple of the global batch size"):
        enqueue(queue, ptr, torch.ones(4, 2))


def test_moco_trains_and_moves_its_queue():
    torch.manual_seed(0)
    model = _moco().train()
    views = [torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)]
    before = model.queue.clone()
    loss = model(views, mode="loss")["loss"]
    loss.backward()
    assert math.isfinite(loss.item()) and model.backbone.conv.weight.grad is not None
    assert int(model.queue_ptr) == 4 and int(model.encoder_k.steps) == 1
    torch.testing.assert_close(model.queue[:, 4:], before[:, 4:])
    torch.testing.assert_close(model.queue.norm(dim=0), torch.ones(8))
    keys = set(model.state_dict())
    assert {"queue", "queue_ptr", "encoder_k.steps", "encoder_k.module.1.mlp.2.weight"} <= keys


def test_momentum_conventions_of_the_two_packages():
    assert _moco(momentum=0.01).encoder_k.momentum == 0.01
    assert _moco(SelfSupMoCo, momentum=0.99).encoder_k.momentum == pytest.approx(0.01)
    with pytest.raises(ValueError, match="MoCo momentum is the online network's"):
        _moco(momentum=0.999 + 1)
    with pytest.raises(ValueError, match="SelfSupMoCo momentum is the momentum network's"):
        _moco(SelfSupMoCo, momentum=1.0)
    with default_scope("mmselfsup"):
        cfg = dict(type="MoCo", backbone=TinyConv(), neck=MoCoV2Neck(8, 16, 4), head=HEAD,
                   queue_len=8, feat_dim=4, data_preprocessor=PLAIN)  # fmt: skip
        assert isinstance(MODELS.build(cfg), SelfSupMoCo)


def test_byol_target_follows_mmselfsups_cosine_momentum():
    """MMSelfSup: avg = m * avg + (1 - m) * online, m = 1 - (1 - base) * (cos(pi k/K) + 1)/2."""
    torch.manual_seed(0)
    neck = dict(type="NonLinearNeck", in_channels=8, hid_channels=8, out_channels=4,
                norm_cfg=dict(type="BN1d"))  # fmt: skip
    head = dict(type="LatentPredictHead", loss=dict(type="CosineSimilarityLoss"),
                predictor=dict(neck, in_channels=4, with_avg_pool=False))  # fmt: skip
    ours = SelfSupBYOL(TinyConv(), neck, head, base_momentum=0.9, data_preprocessor=PLAIN)
    ours.target_net.set_total_steps(10)
    weight = ours.backbone.conv.weight
    target = ours.target_net.module[0].conv.weight
    ours.target_net.update_parameters(nn.Sequential(ours.backbone, ours.neck))  # step 0: copy
    expected = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    ours.target_net.update_parameters(nn.Sequential(ours.backbone, ours.neck))  # step 1
    m = 1 - (1 - 0.9) * (math.cos(math.pi * 1 / 10) + 1) / 2
    torch.testing.assert_close(target, m * expected + (1 - m) * weight.detach())
    plain = BYOL(TinyConv(), neck, head, base_momentum=0.1, data_preprocessor=PLAIN)
    assert plain.target_net.momentum == 0.1 and plain.target_net.end_momentum == 0.0
    with pytest.raises(ValueError, match="base_momentum"):
        BYOL(TinyConv(), neck, head, base_momentum=0.0, data_preprocessor=PLAIN)


def test_cross_correlation_loss_by_hand():
    c = torch.tensor([[0.5, 0.2, -0.1], [0.3, 1.0, 0.0], [0.4, -0.2, 2.0]])
    assert off_diagonal(c).tolist() == pytest.approx([0.2, -0.1, 0.3, 0.0, 0.4, -0.2])
    expected = (0.25 + 0.0 + 1.0) + 0.5 * sum(v * v for v in [0.2, 0.1, 0.3, 0.0, 0.4, 0.2])
    assert CrossCorrelationLoss(lambd=0.5)(c.clone()).item() == pytest.approx(expected)
    assert c[0, 0] == 0.5  # the input is not changed in place


def test_dense_positives_match_a_loop():
    gen = torch.Generator().manual_seed(0)
    unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=gen), dim=1)  # noqa: E731
    q_b, k_b, q_grid, k_grid = unit(2, 5, 4), unit(2, 5, 4), unit(2, 3, 4), unit(2, 3, 4)
    got = dense_positives(q_b, k_b, q_grid, k_grid).view(2, 4)
    for n in range(2):
        for i in range(4):
            j = int((q_b[n, :, i] @ k_b[n]).argmax())
            assert got[n, i].item() == pytest.approx(
                float(q_grid[n, :, i] @ k_grid[n, :, j]), abs=1e-6
            )


def test_densecl_trains_and_fills_both_queues():
    torch.manual_seed(0)
    model = DenseCL(TinyConv(), DenseCLNeck(8, 16, 4, num_grid=4), HEAD, queue_len=8, feat_dim=4,
                    loss_lambda=0.3, data_preprocessor=PLAIN).train()  # fmt: skip
    losses = model([torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)], mode="loss")
    (losses["loss_single"] + losses["loss_dense"]).backward()
    assert int(model.queue_ptr) == 4 and int(model.queue2_ptr) == 4
    with pytest.raises(ValueError, match="loss_lambda"):
        DenseCL(TinyConv(), DenseCLNeck(8, 16, 4), HEAD, loss_lambda=2.0)
    with pytest.raises(ValueError, match="num_grid"):
        DenseCLNeck(8, 16, 4, num_grid=0)


def test_siamese_models_need_two_views():
    with pytest.raises(ValueError, match="MultiView"):
        _moco()(torch.randn(2, 3, 8, 8), mode="loss")


def test_simsiam_hook_fixes_only_the_marked_groups():
    groups = [dict(lr=0.3, fix_lr=True), dict(lr=0.3), dict(lr=0.3, fix_lr=False)]
    runner = SimpleNamespace(
        optim_wrapper=SimpleNamespace(optimizer=SimpleNamespace(param_groups=groups))
    )
    hook = SimSiamHook(fix_pred_lr=True, lr=0.05)
    hook.before_train_iter(runner, 0)  # by epoch: nothing per iteration
    assert [g["lr"] for g in groups] == [0.3, 0.3, 0.3]
    hook.before_train_epoch(runner)
    assert [g["lr"] for g in groups] == [0.05, 0.3, 0.3]
    groups[0]["lr"] = 0.2
    SimSiamHook(fix_pred_lr=True, lr=0.01, adjust_by_epoch=False).before_train_iter(runner, 1)
    assert groups[0]["lr"] == 0.01
    SimSiamHook(fix_pred_lr=False, lr=0.9).before_train_epoch(runner)
    assert groups[0]["lr"] == 0.01


def test_random_solarize():
    img = np.array([[[0, 127, 128]], [[200, 255, 10]]], dtype=np.uint8)
    out = RandomSolarize(threshold=128, prob=1.0)({"img": img.copy()})["img"]
    assert out.tolist() == [[[0, 127, 127]], [[55, 0, 10]]] and out.dtype == np.uint8
    assert (RandomSolarize(prob=0.0)({"img": img.copy()})["img"] == img).all()
    with pytest.raises(ValueError, match="prob"):
        RandomSolarize(prob=1.5)


# --------------------------------------------------------------------------- two ranks
WORLD = 2


def _global_rows() -> torch.Tensor:
    return torch.randn(4, 6, generator=torch.Generator().manual_seed(7))


def _xcorr_head() -> LatentCrossCorrelationHead:
    torch.manual_seed(0)
    head = LatentCrossCorrelationHead(6, dict(type="CrossCorrelationLoss")).eval()
    head.bn.running_mean.normal_()  # eval: per-sample normalisation, comparable across splits
    return head


def _dist_worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=60))  # fmt: skip
    try:
        x = _global_rows()[2 * rank : 2 * rank + 2]
        torch.manual_seed(100 + rank)  # rank 0's permutation must win
        shuffled, idx_unshuffle = batch_shuffle_ddp(x)
        queue, ptr = torch.zeros(6, 8), torch.zeros(1, dtype=torch.long)
        enqueue(queue, ptr, x)
        y = _global_rows().flip(0)[2 * rank : 2 * rank + 2]
        result = dict(
            gathered=concat_all_gather(x),
            shuffled=shuffled,
            restored=batch_unshuffle_ddp(shuffled, idx_unshuffle),
            queue=queue,
            ptr=int(ptr),
            xcorr=_xcorr_head().loss(x, y).item(),
        )
        with open(f"{out_dir}/rank{rank}.pkl", "wb") as f:
            pickle.dump(result, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_gather_shuffle_queue_and_cross_correlation_over_two_ranks(tmp_path):
    mp.spawn(_dist_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]
    rows = _global_rows()
    torch.manual_seed(100)
    perm = torch.randperm(4)
    for rank, got in enumerate(ranks):
        torch.testing.assert_close(got["gathered"], rows)
        torch.testing.assert_close(got["shuffled"], rows[perm.view(2, 2)[rank]])
        torch.testing.assert_close(got["restored"], rows[2 * rank : 2 * rank + 2])
        torch.testing.assert_close(got["queue"][:, :4], rows.t())
        assert got["ptr"] == 4
        # the matrix of the global batch: one process holding all 4 rows gives the same loss
        expected = _xcorr_head().loss(rows, rows.flip(0)).item()
        assert got["xcorr"] == pytest.approx(expected, rel=1e-5)
