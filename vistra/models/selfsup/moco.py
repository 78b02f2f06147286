"""MoCo v1 / v2: contrastive pre-training against a queue of momentum-encoded keys.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning" (2020) and
Chen et al., "Improved Baselines with Momentum Contrastive Learning" (2020). Each image
arrives as two views: the query view goes through backbone -> neck (the online encoder),
the key view through a momentum copy of both (``encoder_k``, an
:class:`~vistra.models.selfsup.momentum.ExponentialMovingAverage`). The L2-normalised
query must pick its own key (``l_pos``, ``(N, 1)``) out of the ``queue_len`` keys of
earlier batches (``l_neg``, ``(N, K)``); the ``ContrastiveHead`` turns that into InfoNCE.
After the loss, this batch's keys (gathered from every rank) replace the oldest ones.

The key encoder sees its batch shuffled across ranks ("shuffle BN", :func:`batch_shuffle_ddp`)
so that BatchNorm cannot leak which key belongs to which query through the per-GPU
statistics. In one process the permutation is still drawn (``torch.randperm`` on the CPU
default generator, as upstream), so seeded runs draw the same random numbers.

MoCo v1 uses MMSelfSup's ``LinearNeck``, v2 ``MoCoV2Neck`` (``fc - relu - fc``).

Key layout (both packages): ``backbone.*``, ``neck.*``, ``encoder_k.steps``,
``encoder_k.module.0.*`` (backbone copy), ``encoder_k.module.1.*`` (neck copy), ``queue``
``(feat_dim, queue_len)``, ``queue_ptr`` ``(1,)``. The packages differ in ``momentum``:
MMPretrain gives the online network's weight per update (default ``0.001``), MMSelfSup the
key encoder's (default ``0.999``); the scoped ``mmselfsup`` variant converts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.models.selfsup import contrastive_head, linear_neck, nonlinear_neck  # noqa: F401
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.models.selfsup.momentum import ExponentialMovingAverage
from vistra.registry import MODELS


# --------------------------------------------------------------------------- distributed
def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """``x`` of every rank concatenated along dim 0 in rank order (no gradient); ``x``
    itself without a process group. Every rank must hold the same number of rows."""
    if not _distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def batch_shuffle_ddp(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of the global batch after one random permutation of it.

    Returns the shuffled rows and the inverse permutation for :func:`batch_unshuffle_ddp`.
    Rank 0's permutation is broadcast, so every rank agrees on it.
    """
    gathered = concat_all_gather(x)
    total = gathered.size(0)
    ranks = total // x.size(0)
    # drawn on the CPU default generator, as upstream draws it, even in one process
    idx_shuffle = torch.randperm(total)
    if _distributed():
        idx_shuffle = idx_shuffle.to(x.device)
        dist.broadcast(idx_shuffle, src=0)
        rank = dist.get_rank()
    else:
        rank = 0
    idx_unshuffle = torch.argsort(idx_shuffle)
    idx_this = idx_shuffle.view(ranks, -1)[rank]
    return gathered[idx_this.to(x.device)], idx_unshuffle


@torch.no_grad()
def batch_unshuffle_ddp(x: torch.Tensor, idx_unshuffle: torch.Tensor) -> torch.Tensor:
    """Undo :func:`batch_shuffle_ddp`: this rank's original rows of the global batch."""
    gathered = concat_all_gather(x)
    ranks = gathered.size(0) // x.size(0)
    rank = dist.get_rank() if _distributed() else 0
    idx_this = idx_unshuffle.view(ranks, -1)[rank]
    return gathered[idx_this.to(x.device)]


# --------------------------------------------------------------------------- neck
@MODELS.register_module()
class MoCoV2Neck(BaseModule):
    """MoCo v2's projector: optional global average pooling, then ``fc - relu - fc``.

    Keys ``mlp.0.*`` and ``mlp.2.*`` (both packages).
    """

    def __init__(
        self,
        in_channels: int,
        hid_channels: int,
        out_channels: int,
        with_avg_pool: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.with_avg_pool = with_avg_pool
        if with_avg_pool:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hid_channels),
            nn.ReLU(inplace=True),
            nn.Linear(hid_channels, out_channels),
        )

    def forward(self, x: Sequence[torch.Tensor]) -> tuple[torch.Tensor]:
        if len(x) != 1:
            raise ValueError(
                f"MoCoV2Neck takes one backbone output, got {len(x)}; set the backbone's "
                "out_indices to a single stage (e.g. out_indices=(3,) for a ResNet)"
            )
        feat = x[0]
        if self.with_avg_pool:
            feat = self.avgpool(feat)
        return (self.mlp(feat.reshape(feat.size(0), -1)),)


# --------------------------------------------------------------------------- queue
def check_queue_args(owner: str, queue_len: int, feat_dim: int) -> None:
    for name, value in (("queue_len", queue_len), ("feat_dim", feat_dim)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner} {name} must be a positive int, got {value!r}")


def new_queue(feat_dim: int, queue_len: int) -> torch.Tensor:
    """``(feat_dim, queue_len)`` random unit columns: the negatives before any batch."""
    return F.normalize(torch.randn(feat_dim, queue_len), dim=0)


@torch.no_grad()
def enqueue(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """Write the keys of every rank over the oldest columns of ``queue`` (in place)."""
    keys = concat_all_gather(keys)
    batch, length = keys.size(0), queue.size(1)
    if length % batch:
        raise ValueError(
            f"queue_len ({length}) must be a multiple of the global batch size ({batch}): "
            "the queue is overwritten one whole batch at a time"
        )
    start = int(ptr)
    queue[:, start : start + batch] = keys.t()
    ptr[0] = (start + batch) % length


def online_momentum(owner: str, name: str, momentum: float, of_target: bool) -> float:
    """The online network's weight per update; ``of_target`` converts MMSelfSup's value
    (the momentum network's weight). ``name`` is the argument, for the error."""
    value = 1.0 - momentum if of_target else momentum
    if not 0.0 < value < 1.0:
        meaning = "the momentum network's" if of_target else "the online network's"
        raise ValueError(
            f"{owner} {name} is {meaning} weight per update and must lie strictly between "
            f"0 and 1, got {momentum!r}"
        )
    return value


# --------------------------------------------------------------------------- model
@MODELS.register_module()
class MoCo(BaseSelfSupervisor):
    """MoCo v1/v2 with MMPretrain's arguments (``momentum``: the online weight, 0.001)."""

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        queue_len: int = 65536,
        feat_dim: int = 128,
        momentum: float = 0.001,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        check_queue_args(type(self).__name__, queue_len, feat_dim)
        weight = online_momentum(type(self).__name__, "momentum", momentum, self._target_momentum)
        self.encoder_k = ExponentialMovingAverage(nn.Sequential(self.backbone, self.neck), weight)
        self.queue_len = queue_len
        self.register_buffer("queue", new_queue(feat_dim, queue_len))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    # MMSelfSup's variant reads ``momentum`` as the key encoder's weight
    _target_momentum = False

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        """Backbone features of a batch, or of the first view when given a list of views."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def _head_loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return self.head.loss(pos, neg)

    def loss(
        self, inputs: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
    ) -> dict[str, torch.Tensor]:
        """InfoNCE of the query view against its key and the queue; then the queue update."""
        im_q, im_k = two_views(type(self).__name__, inputs)
        q = F.normalize(self.neck(self.backbone(im_q))[0], dim=1)
        with torch.no_grad():
            self.encoder_k.update_parameters(nn.Sequential(self.backbone, self.neck))
            im_k, idx_unshuffle = batch_shuffle_ddp(im_k)
            k = F.normalize(self.encoder_k(im_k)[0], dim=1)
            k = batch_unshuffle_ddp(k, idx_unshuffle)
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.clone().detach()
        loss = self._head_loss(l_pos, l_neg)
        enqueue(self.queue, self.queue_ptr, k)
        return dict(loss=loss)


@MODELS.register_module(name="MoCo", scope="mmselfsup")
class SelfSupMoCo(MoCo):
    """MoCo with MMSelfSup 1.x's arguments: ``momentum`` is the key encoder's weight
    (default 0.999, i.e. an online weight of 0.001); the head is called directly."""

    _target_momentum = True

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        queue_len: int = 65536,
        feat_dim: int = 128,
        momentum: float = 0.999,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone, neck, head, queue_len, feat_dim, momentum, pretrained,
            data_preprocessor, init_cfg,
        )  # fmt: skip

    def _head_loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return self.head(pos, neg)


def two_views(owner: str, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The two views of a batch, or a clear error naming the pipeline step that makes them."""
    if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
        got = f"{len(inputs)} view(s)" if isinstance(inputs, (list, tuple)) else "one tensor"
        raise ValueError(
            f"{owner} takes 2 views per image, got {got}: the train pipeline needs "
            "dict(type='MultiView', num_views=2, transforms=[view_pipeline]) before packing"
        )
    return inputs[0], inputs[1]
