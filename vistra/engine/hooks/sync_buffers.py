"""``SyncBuffersHook`` (MMEngine): average the model's floating-point buffers (BatchNorm
running statistics, ...) over ranks, so that every rank validates and saves the same model.

Without SyncBN each rank's BatchNorm statistics come from its own share of the data; DDP
broadcasts rank 0's buffers at each forward, but an evaluation or checkpoint taken from
the raw module would see one rank's statistics only.
"""

from __future__ import annotations

from typing import Any

import torch

from vistra.dist.collect import get_world_size, is_distributed
from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS


def all_reduce_buffers_mean(module: torch.nn.Module) -> None:
    """Replace each floating-point buffer of ``module`` by its mean over ranks.

    Integer buffers (``num_batches_tracked``) are counters, not estimates: they are left
    alone rather than averaged into fractions.
    """
    import torch.distributed as dist

    world_size = get_world_size()
    # one collective per buffer: this runs once per epoch, and buffers may differ in dtype
    for buffer in module.buffers():
        if buffer.is_floating_point() and buffer.numel():
            dist.all_reduce(buffer)
            buffer.div_(world_size)


@HOOKS.register_module()
class SyncBuffersHook(Hook):
    """MMEngine's points: after each training epoch, and before a validation that no
    epoch end preceded (iteration-based training)."""

    def __init__(self) -> None:
        self.synced_in_train = False

    def after_train_epoch(self, runner: Any) -> None:
        if is_distributed():
            with torch.no_grad():
                all_reduce_buffers_mean(runner.model)
            self.synced_in_train = True

    def before_val_epoch(self, runner: Any) -> None:
        if is_distributed() and not self.synced_in_train:
            with torch.no_grad():
                all_reduce_buffers_mean(runner.model)
        self.synced_in_train = False
