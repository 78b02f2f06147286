"""SimCLR: contrastive pre-training with NT-Xent over the global batch.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations"
(2020). Each image arrives as two augmented views (``MultiView(num_views=2)``). Both go
through backbone -> ``NonLinearNeck``; every L2-normalised projection must then pick its
partner view out of all ``2N - 1`` other projections of the *global* batch: the other
``2N - 2`` are its negatives, so with 8 GPUs of 32 images each sees 510 negatives, not 62.

Distributed runs gather the projections of every rank with :func:`gather_with_grad`,
whose backward sums the gradients that every rank's (identical) loss sends to a
projection and hands the sum to the rank that computed it -- the semantics of
``torch.distributed.nn.functional.all_gather``, which torch 2.14 deprecates. After DDP
averages parameter gradients over ranks, they equal the gradients of one process holding
the whole batch (``tests/models/test_simclr.py`` checks this with two processes).
MMPretrain's own gather passes back only the local rank's share, which gives ``1/world``
of that gradient; vistra's loss value is the same, its gradient the exact one.

``state_dict`` keys match MMPretrain's: ``backbone.*``, ``neck.fc0.weight``,
``neck.bn0.*``, ``neck.fc1.weight``, ``neck.bn1.*`` (the head has no parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from vistra.data.structures import DataSample
from vistra.models.selfsup import contrastive_head, nonlinear_neck  # noqa: F401 (registers)
from vistra.models.selfsup.base import BaseSelfSupervisor
from vistra.registry import MODELS


# --------------------------------------------------------------------------- maths
class _AllGather(torch.autograd.Function):
    """``all_gather`` whose backward returns this rank's slice of the summed gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> torch.Tensor:
        # every rank computed the same loss from all parts, so the gradient of part r is
        # the sum over ranks; all_reduce (rather than reduce_scatter) works on every backend
        total = torch.stack(grads)
        dist.all_reduce(total)
        return total[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, in rank order, keeping the graph.

    Ranks may hold different numbers of rows (a short last batch): rows are padded to the
    largest count for the collective and the padding is dropped again. Without a process
    group (or with one process) ``x`` is returned as it is.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    count = torch.tensor([x.size(0)], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    longest = max(sizes)
    if longest > x.size(0):
        x = torch.cat([x, x.new_zeros(longest - x.size(0), *x.shape[1:])])
    parts = _AllGather.apply(x)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def pair_similarities(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities of each row to its partner and to every other row.

    ``z`` is ``(2N, d)``, L2-normalised, with rows ``2i`` and ``2i + 1`` the two views of
    image ``i``. Returns ``pos`` ``(2N, 1)``: row ``r`` against row ``r ^ 1``, and ``neg``
    ``(2N, 2N - 2)``: row ``r`` against all rows but itself and its partner, in index order
    (MMPretrain's layout).
    """
    rows = z.size(0)
    if rows % 2:
        raise ValueError(f"SimCLR needs an even number of projections (2 per image), got {rows}")
    sim = z @ z.t()
    index = torch.arange(rows, device=z.device)
    partner = index ^ 1
    pos = sim[index, partner].unsqueeze(1)
    keep = torch.ones(rows, rows, dtype=torch.bool, device=z.device)
    keep[index, index] = False
    keep[index, partner] = False
    neg = sim[keep].view(rows, rows - 2)
    return pos, neg


# --------------------------------------------------------------------------- model
@MODELS.register_module()
class SimCLR(BaseSelfSupervisor):
    """SimCLR with MMPretrain's arguments: ``backbone`` -> ``neck`` -> ``head``.

    ``data_preprocessor`` defaults to ``SelfSupDataPreprocessor``, which turns the two
    collated views into a list of two normalised batches.
    """

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Any:
        """Backbone features of a batch, or of the first view when given a list of views."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(
        self,
        inputs: Sequence[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
    ) -> dict[str, torch.Tensor]:
        """NT-Xent over the global batch; ``inputs`` is ``[view_1, view_2]``, each ``(N, C, H, W)``."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            got = f"{len(inputs)} views" if isinstance(inputs, (list, tuple)) else "one tensor"
            raise ValueError(
                f"SimCLR takes exactly 2 views per image, got {got}: the train pipeline needs "
                "dict(type='MultiView', num_views=2, transforms=[view_pipeline]) before PackInputs"
            )
        if self.neck is None or self.head is None:
            raise ValueError(
                "SimCLR.loss needs a neck (NonLinearNeck) and a head (ContrastiveHead)"
            )
        # interleave the views: rows 2i and 2i + 1 are the two views of image i
        images = torch.stack(list(inputs), dim=1).flatten(0, 1)
        z = self.neck(self.backbone(images))[0]
        z = z / (torch.norm(z, p=2, dim=1, keepdim=True) + 1e-10)
        pos, neg = pair_similarities(gather_with_grad(z))
        return dict(loss=self.head.loss(pos, neg))
