"""``SwAVHook``: the embedding queue of SwAV and the prototypes' frozen first iterations.

SwAV (Caron et al., 2020) with small batches adds the embeddings of earlier batches to the
Sinkhorn-Knopp problem. From epoch ``epoch_queue_starts`` on, this hook gives the model's
``SwAVLoss`` a zero queue of ``(len(crops_for_assign), queue_length / world_size,
feat_dim)``; the loss fills it batch by batch and uses it once its last row is filled.
The queue is saved to ``work_dir/queue.pth`` (``queue{rank}.pth`` when distributed)
after every ``interval`` epochs and loaded from there when a run resumes.
``frozen_layers_cfg={'prototypes': n}`` keeps every parameter whose name contains
``prototypes`` frozen for the first ``n`` iterations (as the paper, for stability).
MMPretrain's and MMSelfSup's hooks take the same arguments.
"""

from __future__ import annotations

import logging
import os.path as osp
from collections.abc import Sequence
from typing import Any

import torch

from vistra.dist.model_wrap import unwrap
from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS

logger = logging.getLogger("vistra")


def _swav_loss(runner: Any) -> Any:
    head = getattr(unwrap(runner.model), "head", None)
    loss = getattr(head, "loss_fn", None)
    if loss is None or not hasattr(loss, "queue"):
        raise TypeError(
            "SwAVHook needs a model whose head is a SwAVHead (with a SwAVLoss); got head "
            f"{type(head).__name__}"
        )
    return loss


@HOOKS.register_module()
class SwAVHook(Hook):
    """Creates, hands over, saves and reloads SwAV's queue; freezes layers early on.

    ``batch_size`` is the per-GPU batch; ``queue_length`` is rounded down to a multiple
    of the global batch.
    """

    def __init__(
        self,
        batch_size: int,
        epoch_queue_starts: int = 15,
        crops_for_assign: Sequence[int] = (0, 1),
        feat_dim: int = 128,
        queue_length: int = 0,
        interval: int = 1,
        frozen_layers_cfg: dict[str, int] | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"SwAVHook batch_size must be a positive int, got {batch_size!r}")
        if queue_length < 0:
            raise ValueError(f"SwAVHook queue_length must be >= 0, got {queue_length!r}")
        self.batch_size = batch_size
        self.epoch_queue_starts = epoch_queue_starts
        self.crops_for_assign = list(crops_for_assign)
        self.feat_dim = feat_dim
        self.queue_length = queue_length
        self.interval = interval
        self.frozen_layers_cfg = dict(frozen_layers_cfg or {})
        self.requires_grad = True
        self.queue: torch.Tensor | None = None
        self.queue_path: str | None = None

    def before_run(self, runner: Any) -> None:
        world = runner.world_size
        name = f"queue{runner.rank}.pth" if world > 1 else "queue.pth"
        self.queue_path = osp.join(runner.work_dir, name)
        if osp.isfile(self.queue_path):
            self.queue = torch.load(self.queue_path, map_location="cpu", weights_only=True)[
                "queue"
            ].to(runner.device)
            _swav_loss(runner).queue = self.queue
            logger.info("Load queue from file: %s", self.queue_path)
        global_batch = self.batch_size * world
        self.queue_length -= self.queue_length % global_batch

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        for layer, frozen_iters in self.frozen_layers_cfg.items():
            freeze = runner.iter < frozen_iters
            if freeze == (not self.requires_grad):
                continue  # already in that state
            self.requires_grad = not freeze
            for name, param in unwrap(runner.model).named_parameters():
                if layer in name:
                    param.requires_grad = not freeze

    def before_train_epoch(self, runner: Any) -> None:
        if self.queue_length > 0 and runner.epoch >= self.epoch_queue_starts and self.queue is None:
            self.queue = torch.zeros(
                len(self.crops_for_assign),
                self.queue_length // runner.world_size,
                self.feat_dim,
                device=runner.device,
            )
        loss = _swav_loss(runner)
        loss.queue = self.queue
        loss.use_queue = False

    def after_train_epoch(self, runner: Any) -> None:
        self.queue = _swav_loss(runner).queue
        if self.queue is not None and self.every_n_epochs(runner, self.interval):
            torch.save({"queue": self.queue}, self.queue_path)
