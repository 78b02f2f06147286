"""SwAV: swapped prediction of online cluster assignments over multi-crop views.

Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments" (2020). Each image arrives as several crops (the configs: 2 of 224 px and 6
of 96 px, ``MultiView`` with two pipelines). Crops of one size go through the backbone
together; ``SwAVNeck`` pools, projects and L2-normalises them. ``SwAVLoss`` scores every
projection against ``K`` prototypes (unit rows of a bias-free linear layer, renormalised
before every step), turns the scores of each of the ``crops_for_assign`` crops into an
equipartitioned soft assignment with a few Sinkhorn-Knopp iterations, and asks every
*other* crop to predict that assignment (cross-entropy against its softmax at
``temperature``). Once ``SwAVHook`` has made a queue of earlier embeddings, their scores
join the Sinkhorn problem, so that small batches still spread over all prototypes.

Key layouts: MMPretrain's ``neck.norm.*`` and ``neck.projection_neck.{0,1,3}.*`` (the
norm appears twice, as upstream registers it twice), ``head.loss_module.prototypes.weight``;
MMSelfSup's ``neck.bn.*``, ``neck.projection_neck.*``, ``head.loss.prototypes.weight``
(scoped ``mmselfsup`` variants of the neck and head).
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
from vistra.models.layers.norm import build_norm_layer
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.registry import MODELS

_BN_INIT = [dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"])]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(x: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(x)
    return x


# --------------------------------------------------------------------------- maths
@torch.no_grad()
def distributed_sinkhorn(
    out: torch.Tensor, sinkhorn_iterations: int, world_size: int, epsilon: float
) -> torch.Tensor:
    """Soft assignments ``(B, K)`` of ``B`` samples to ``K`` prototypes from their scores.

    ``exp(out / epsilon)`` is alternately scaled so that every prototype receives the
    same mass and every sample a total of one. As in MMPretrain/MMSelfSup the total mass
    is summed over ranks, while the per-prototype sums are summed over ranks only when one
    of them is zero (upstream's behaviour, kept so that multi-GPU numbers agree too).
    """
    q = torch.exp(out / epsilon).t()  # K x B, as in the paper's notation
    samples = q.shape[1] * world_size
    prototypes = q.shape[0]
    total = _all_reduce(torch.sum(q))
    q /= total
    for _ in range(sinkhorn_iterations):
        rows = torch.sum(q, dim=1, keepdim=True)
        if len(torch.nonzero(rows == 0)) > 0:
            q += 1e-12  # an empty prototype would divide by zero
            rows = _all_reduce(torch.sum(q, dim=1, keepdim=True, dtype=q.dtype))
        q /= rows
        q /= prototypes
        q /= torch.sum(q, dim=0, keepdim=True)
        q /= samples
    q *= samples  # columns sum to one: an assignment per sample
    return q.t()


# --------------------------------------------------------------------------- neck
@MODELS.register_module()
class SwAVNeck(BaseModule):
    """Pool every crop group's last-stage map, then ``fc - norm - relu - fc`` and L2-norm.

    ``hid_channels=0``: one linear layer; ``out_channels=0``: no projection. The input is
    the list of the backbone's outputs, one per crop size; the output is one ``(sum of
    crops * N, out_channels)`` tensor in crop order.
    """

    _norm_name = "norm"

    def __init__(
        self,
        in_channels: int,
        hid_channels: int,
        out_channels: int,
        with_avg_pool: bool = True,
        with_l2norm: bool = True,
        norm_cfg: dict = dict(type="SyncBN"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = _BN_INIT,  # noqa: B006 (copied by BaseModule)
    ) -> None:
        super().__init__(init_cfg)
        self.with_avg_pool = with_avg_pool
        self.with_l2norm = with_l2norm
        if with_avg_pool:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        if out_channels == 0:
            self.projection_neck: nn.Module | None = self._no_projection()
        elif hid_channels == 0:
            self.projection_neck = nn.Linear(in_channels, out_channels)
        else:
            norm = build_norm_layer(norm_cfg, hid_channels)[1]
            # upstream registers the norm under its own name as well as inside the MLP
            self.add_module(self._norm_name, norm)
            self.projection_neck = nn.Sequential(
                nn.Linear(in_channels, hid_channels),
                norm,
                nn.ReLU(inplace=True),
                nn.Linear(hid_channels, out_channels),
            )

    @staticmethod
    def _no_projection() -> nn.Module | None:
        return nn.Identity()

    def forward_projection(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection_neck is not None:
            x = self.projection_neck(x)
        if self.with_l2norm:
            x = F.normalize(x, dim=1, p=2)
        return x

    def _features(self, x: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        pooled = []
        for group in x:
            feat = group[0]
            pooled.append(self.avgpool(feat) if self.with_avg_pool else feat)
        feat = torch.cat(pooled)
        return feat.view(feat.size(0), -1)

    def forward(self, x: Sequence[Sequence[torch.Tensor]]) -> Any:
        return self.forward_projection(self._features(x))


@MODELS.register_module(name="SwAVNeck", scope="mmselfsup")
class SelfSupSwAVNeck(SwAVNeck):
    """MMSelfSup's SwAV neck: the norm is ``bn``, no projection is ``None``, and the
    output is a one-element list."""

    _norm_name = "bn"

    @staticmethod
    def _no_projection() -> nn.Module | None:
        return None

    def forward(self, x: Sequence[Sequence[torch.Tensor]]) -> Any:
        return [self.forward_projection(self._features(x))]


# --------------------------------------------------------------------------- loss
class MultiPrototypes(BaseModule):
    """Several prototype sets (``prototypes{i}``), one linear layer each."""

    def __init__(
        self,
        output_dim: int,
        num_prototypes: Sequence[int],
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.num_heads = len(num_prototypes)
        for i, k in enumerate(num_prototypes):
            self.add_module(f"prototypes{i}", nn.Linear(output_dim, k, bias=False))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [getattr(self, f"prototypes{i}")(x) for i in range(self.num_heads)]


@MODELS.register_module()
class SwAVLoss(BaseModule):
    """Swapped-prediction loss with Sinkhorn-Knopp targets (both packages).

    ``num_crops`` are the crop counts per size (``[2, 6]``), ``crops_for_assign`` the
    crops whose assignments are predicted. ``queue`` (``(len(crops_for_assign), L,
    feat_dim)`` or ``None``) and ``use_queue`` are set by ``SwAVHook``.
    A list ``num_prototypes`` builds several prototype sets (``prototypes.prototypes{i}``),
    which, as upstream, the loss itself cannot use: only the key layout is supported.
    """

    def __init__(
        self,
        feat_dim: int,
        sinkhorn_iterations: int = 3,
        epsilon: float = 0.05,
        temperature: float = 0.1,
        crops_for_assign: Sequence[int] = (0, 1),
        num_crops: Sequence[int] = (2,),
        num_prototypes: int | Sequence[int] = 3000,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.sinkhorn_iterations = sinkhorn_iterations
        self.epsilon = epsilon
        self.temperature = temperature
        self.crops_for_assign = list(crops_for_assign)
        self.num_crops = list(num_crops)
        total = sum(self.num_crops)
        bad = [c for c in self.crops_for_assign if not 0 <= c < total]
        if bad:
            raise ValueError(
                f"SwAVLoss crops_for_assign {bad} out of range for {total} crops "
                f"(num_crops={self.num_crops})"
            )
        self.use_queue = False
        self.queue: torch.Tensor | None = None
        if isinstance(num_prototypes, (list, tuple)):
            self.prototypes: nn.Module = MultiPrototypes(feat_dim, num_prototypes)
        elif isinstance(num_prototypes, int) and num_prototypes > 0:
            self.prototypes = nn.Linear(feat_dim, num_prototypes, bias=False)
        else:
            raise ValueError(
                f"SwAVLoss num_prototypes must be a positive int or a list of them, got "
                f"{num_prototypes!r}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The loss of ``(sum(num_crops) * N, feat_dim)`` unit embeddings, crop-major."""
        if not isinstance(self.prototypes, nn.Linear):
            raise ValueError(
                "SwAVLoss with a list of num_prototypes builds its prototype sets but, as "
                "MMPretrain/MMSelfSup, cannot compute a loss with them; give one int"
            )
        with torch.no_grad():  # prototypes stay on the unit sphere
            w = F.normalize(self.prototypes.weight.data.clone(), dim=1, p=2)
            self.prototypes.weight.copy_(w)
        embedding, output = x.detach(), self.prototypes(x)
        total_crops = sum(self.num_crops)
        bs = int(embedding.size(0) / total_crops)
        world_size = dist.get_world_size() if _distributed() else 1
        loss = 0
        for i, crop_id in enumerate(self.crops_for_assign):
            with torch.no_grad():
                out = output[bs * crop_id : bs * (crop_id + 1)].detach()
                if self.queue is not None:
                    if self.use_queue or not torch.all(self.queue[i, -1, :] == 0):
                        self.use_queue = True
                        out = torch.cat((self.queue[i] @ self.prototypes.weight.t(), out))
                    # the queue shifts by one batch; the newest embeddings go in front
                    self.queue[i, bs:] = self.queue[i, :-bs].clone()
                    self.queue[i, :bs] = embedding[crop_id * bs : (crop_id + 1) * bs]
                q = distributed_sinkhorn(out, self.sinkhorn_iterations, world_size, self.epsilon)
                q = q[-bs:]
            subloss = 0
            for v in range(total_crops):
                if v == crop_id:
                    continue
                logits = output[bs * v : bs * (v + 1)] / self.temperature
                subloss -= torch.mean(torch.sum(q * F.log_softmax(logits, dim=1), dim=1))
            loss += subloss / (total_crops - 1)
        return loss / len(self.crops_for_assign)


# --------------------------------------------------------------------------- head
@MODELS.register_module()
class SwAVHead(BaseModule):
    """Wraps ``SwAVLoss`` (MMPretrain: key ``loss_module``)."""

    def __init__(self, loss: dict) -> None:
        super().__init__()
        self.loss_module = MODELS.build(loss, key_path="model.head.loss")

    @property
    def loss_fn(self) -> SwAVLoss:
        """The ``SwAVLoss`` inside (``SwAVHook`` sets its queue)."""
        return self.loss_module

    def loss(self, pred: torch.Tensor) -> torch.Tensor:
        return self.loss_module(pred)

    def forward(self, pred: torch.Tensor) -> torch.Tensor:
        return self.loss_module(pred)


@MODELS.register_module(name="SwAVHead", scope="mmselfsup")
class SelfSupSwAVHead(BaseModule):
    """MMSelfSup's SwAV head: the loss module is the attribute ``loss``."""

    def __init__(self, loss: dict) -> None:
        super().__init__()
        self.loss = MODELS.build(loss, key_path="model.head.loss")

    @property
    def loss_fn(self) -> SwAVLoss:
        return self.loss

    def forward(self, pred: torch.Tensor) -> torch.Tensor:
        return self.loss(pred)


# --------------------------------------------------------------------------- model
@MODELS.register_module()
class SwAV(BaseSelfSupervisor):
    """SwAV (both packages): crops of equal size share one backbone pass."""

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        """Backbone features of a batch, or of the first crop when given a list of crops."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(
        self, inputs: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
    ) -> dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError(
                "SwAV takes several crops per image: the train pipeline needs "
                "dict(type='MultiView', num_views=[2, 6], transforms=[pipeline_224, "
                "pipeline_96]) before packing"
            )
        # consecutive crops of one size form a group that goes through the backbone at once
        sizes = torch.tensor([view.shape[-1] for view in inputs])
        ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0)
        outputs, start = [], 0
        for end in ends.tolist():
            outputs.append(self.backbone(torch.cat(list(inputs[start:end]))))
            start = end
        embedding = self.neck(outputs)
        if isinstance(embedding, (list, tuple)):
            embedding = embedding[0]
        return dict(loss=self.head(embedding))
