"""Exponential moving average of the model weights, evaluated in place of the raw ones."""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from vistra import checkpoint as ckpt_io
from vistra.dist.model_wrap import unwrap
from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS, MODELS

logger = logging.getLogger("vistra")


class ExponentialMovingAverage(nn.Module):
    """MMEngine's convention: ``avg = (1 - momentum) * avg + momentum * param``.

    State dict keys are ``module.<name>`` plus ``steps``, as MMEngine's averaged models.
    """

    def __init__(
        self,
        model: nn.Module,
        momentum: float = 0.0002,
        interval: int = 1,
        update_buffers: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"EMAHook momentum must be in (0, 1), got {momentum}")
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.momentum = momentum
        self.interval = interval
        self.update_buffers = update_buffers
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))

    def _pairs(self, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
        mine = dict(self.module.named_parameters())
        theirs = dict(model.named_parameters())
        pairs = [(mine[k], theirs[k]) for k in mine]
        if self.update_buffers:
            mb, tb = dict(self.module.named_buffers()), dict(model.named_buffers())
            pairs += [(mb[k], tb[k]) for k in mb]
        return pairs

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self.steps == 0:
            for avg, src in self._pairs(model):
                avg.copy_(src)
        elif self.steps % self.interval == 0:
            for avg, src in self._pairs(model):
                if avg.is_floating_point():
                    avg.lerp_(src, self.momentum)
                else:
                    avg.copy_(src)
        if not self.update_buffers:  # keep BN statistics in step with the source model
            for avg, src in zip(self.module.buffers(), model.buffers()):
                avg.copy_(src)
        self.steps += 1


MODELS.register_module(module=ExponentialMovingAverage)


@HOOKS.register_module()
class EMAHook(Hook):
    """Keeps an EMA copy of the model; validation/test use it; checkpoints store it.

    As in MMEngine, a saved checkpoint's ``state_dict`` holds the EMA weights (so
    ``test`` and ``load_from`` get them directly) and ``ema_state_dict`` holds the raw
    training weights; resuming swaps them back. Averaging starts at iteration
    ``begin_iter`` or epoch ``begin_epoch`` (counted from 1, MMEngine's rule); until then
    the copy follows the model exactly.
    """

    priority = "NORMAL"

    def __init__(
        self,
        ema_type: str = "ExponentialMovingAverage",
        strict_load: bool = False,
        begin_iter: int = 0,
        begin_epoch: int = 0,
        **kwargs: Any,
    ) -> None:
        if begin_iter and begin_epoch:
            raise ValueError(
                f"EMAHook: set begin_iter ({begin_iter}) or begin_epoch ({begin_epoch}), not both"
            )
        if begin_iter < 0 or begin_epoch < 0:
            raise ValueError(
                f"EMAHook: begin_iter and begin_epoch must be >= 0, got {begin_iter}, {begin_epoch}"
            )
        self.ema_cfg = dict(type=ema_type, **kwargs)
        self.strict_load = strict_load
        self.begin_iter = begin_iter
        self.begin_epoch = begin_epoch
        self.enabled_by_epoch = begin_epoch > 0  # otherwise by iteration (from 0: at once)
        self.ema_model: ExponentialMovingAverage | None = None

    def before_run(self, runner: Any) -> None:
        self.ema_model = MODELS.build(
            self.ema_cfg,
            default_args=dict(model=unwrap(runner.model)),
            key_path="custom_hooks.EMAHook",
        )

    def before_train(self, runner: Any) -> None:
        if self.enabled_by_epoch and self.begin_epoch > runner.max_epochs:
            raise ValueError(
                f"EMAHook begin_epoch={self.begin_epoch} is after max_epochs={runner.max_epochs}"
            )
        if not self.enabled_by_epoch and self.begin_iter > runner.max_iters:
            raise ValueError(
                f"EMAHook begin_iter={self.begin_iter} is after max_iters={runner.max_iters}"
            )

    def _started(self, runner: Any) -> bool:
        # MMEngine's rule: the iteration (epoch) numbered begin_iter (begin_epoch), counting
        # from 1, is the first one averaged.
        if self.enabled_by_epoch:
            return runner.epoch + 1 >= self.begin_epoch
        return runner.iter + 1 >= self.begin_iter

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        assert self.ema_model is not None
        if self._started(runner):
            self.ema_model.update_parameters(unwrap(runner.model))
        else:  # before the EMA starts, track the model exactly
            self.ema_model.module.load_state_dict(unwrap(runner.model).state_dict())

    def _swapped_tensors(self, runner: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Model and EMA tensors that evaluation swaps: the parameters, and the buffers too
        when the EMA averages them (otherwise they are equal already)."""
        assert self.ema_model is not None
        model, ema = unwrap(runner.model), self.ema_model.module
        if self.ema_model.update_buffers:
            return zip(
                itertools.chain(model.parameters(), model.buffers()),
                itertools.chain(ema.parameters(), ema.buffers()),
            )
        return zip(model.parameters(), ema.parameters())

    def _swap(self, runner: Any) -> None:
        for p, ema_p in self._swapped_tensors(runner):
            tmp = p.data.clone()
            p.data.copy_(ema_p.data)
            ema_p.data.copy_(tmp)

    def before_val_epoch(self, runner: Any) -> None:
        self._swap(runner)

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        self._swap(runner)

    def before_test_epoch(self, runner: Any) -> None:
        self._swap(runner)

    def after_test_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        self._swap(runner)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        assert self.ema_model is not None
        checkpoint["ema_state_dict"] = self.ema_model.state_dict()
        self._swap_state_dicts(checkpoint)

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        assert self.ema_model is not None
        if "ema_state_dict" in checkpoint and runner.resuming:
            self._swap_state_dicts(checkpoint)  # state_dict back to raw weights
            self.ema_model.load_state_dict(checkpoint["ema_state_dict"], strict=self.strict_load)
        else:
            if runner.resuming:
                logger.warning(
                    "checkpoint has no ema_state_dict; the EMA starts from its state_dict"
                )
            self._load_into_ema(checkpoint)

    def _load_into_ema(self, checkpoint: dict) -> None:
        """The checkpoint's weights into the EMA copy, as the runner loads them into the
        model: what fits is loaded, a mismatched head is reported, not fatal (fine-tuning),
        unless ``strict_load``."""
        assert self.ema_model is not None
        state = ckpt_io.revise_keys(copy.deepcopy(ckpt_io.extract_state_dict(checkpoint)))
        report = ckpt_io.load_state_dict(self.ema_model.module, state, source="EMAHook")
        if self.strict_load and (report.unset or report.unexpected):
            raise ckpt_io.CheckpointError(
                f"EMAHook(strict_load=True): the checkpoint does not fit the EMA model\n"
                f"{report.table()}"
            )

    @staticmethod
    def _swap_state_dicts(checkpoint: dict) -> None:
        model_state, ema_state = checkpoint["state_dict"], checkpoint["ema_state_dict"]
        for key, value in list(ema_state.items()):
            if key.startswith("module."):
                name = key[len("module.") :]
                if name in model_state:
                    ema_state[key], model_state[name] = model_state[name], value
