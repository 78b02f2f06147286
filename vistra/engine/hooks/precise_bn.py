"""``PreciseBNHook`` (MMPretrain): recompute the BatchNorm statistics with the weights held
fixed, as the true average of per-batch means and variances over ``num_samples`` training
samples (`Rethinking "Batch" in BatchNorm <https://arxiv.org/abs/2105.07576>`_, Sec. 3),
instead of the running average of statistics taken while the weights moved.

Every ``interval`` epochs (an epoch-based loop) or iterations (an iteration-based one), after
the training step: each BatchNorm layer in training mode has its statistics reset and its
``momentum`` set to ``None`` (PyTorch then keeps the cumulative average), the model runs
forward in training mode without gradients on ``num_samples // (batch size * world size)``
batches, then the momenta are restored and, under torch.distributed, the statistics are
averaged over ranks. The batches come from a loader of its own over the training set
(shuffled, seeded by the epoch), so the training loader's position -- what exact resume
restores -- is not touched; batch augments (Mixup, CutMix) are not applied, the statistics
are those of the images the pipeline gives. Run it before ``CheckpointHook`` and ``EMAHook``
(MMPretrain's configs give it ``priority='ABOVE_NORMAL'``).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import torch
from torch import nn

from vistra.dist.collect import get_world_size, is_distributed
from vistra.engine.hooks.hook import Hook
from vistra.engine.hooks.sync_buffers import all_reduce_buffers_mean
from vistra.registry import HOOKS

logger = logging.getLogger("vistra")


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]


@torch.no_grad()
def update_bn_stats(model: nn.Module, batches: Any, num_iters: int) -> int:
    """Set every training-mode BatchNorm's statistics to the average over ``num_iters``
    batches of ``batches`` (cycled if shorter); returns the batches used."""
    norms = _batch_norms(model)
    if not norms:
        return 0
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average of the batch statistics
    used = 0
    try:
        for data in itertools.islice(itertools.cycle(batches), num_iters):
            model(**model.data_preprocessor(data, training=False), mode="tensor")
            used += 1
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
    return used


@HOOKS.register_module()
class PreciseBNHook(Hook):
    """Recompute BN statistics every ``interval`` epochs or iterations."""

    priority = "ABOVE_NORMAL"

    def __init__(self, num_samples: int = 8192, interval: int = 1) -> None:
        for name, value in (("num_samples", num_samples), ("interval", interval)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PreciseBNHook {name} must be a positive int, got {value!r}")
        self.num_samples, self.interval = num_samples, interval

    def after_train_epoch(self, runner: Any) -> None:
        if _epoch_based(runner) and (runner.epoch + 1) % self.interval == 0:
            self._run(runner, seed=runner.epoch)

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        if not _epoch_based(runner) and (runner.iter + 1) % self.interval == 0:
            self._run(runner, seed=runner.iter)

    def _run(self, runner: Any, seed: int) -> None:
        from vistra.engine.optim import unwrap_model

        model = unwrap_model(runner.model)
        source = runner.train_dataloader
        batch_size = source.batch_size or 1
        num_iters = max(1, self.num_samples // (batch_size * get_world_size()))
        generator = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(
            source.dataset,
            batch_size=batch_size,
            sampler=torch.utils.data.RandomSampler(source.dataset, generator=generator),
            collate_fn=source.collate_fn,
            num_workers=0,
        )
        was_training = model.training
        model.train()
        used = update_bn_stats(model, loader, num_iters)
        model.train(was_training)
        if is_distributed():
            all_reduce_buffers_mean(model)
        logger.info(
            "PreciseBNHook: BN statistics recomputed over %d batches of %d", used, batch_size
        )


def _epoch_based(runner: Any) -> bool:
    from vistra.engine.loops import EpochBasedTrainLoop

    return isinstance(runner.train_loop, EpochBasedTrainLoop)
