"""Tells the train sampler which epoch it is, so every epoch has its own order."""

from __future__ import annotations

from typing import Any

from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS


@HOOKS.register_module()
class DistSamplerSeedHook(Hook):
    """Calls ``sampler.set_epoch(runner.epoch)`` before each training epoch (MMEngine's name)."""

    priority = "NORMAL"

    def before_train_epoch(self, runner: Any) -> None:
        loader = runner.train_loop.dataloader
        for holder in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            inner = getattr(holder, "sampler", holder)
            if hasattr(inner, "set_epoch"):
                inner.set_epoch(runner.epoch)
                return
