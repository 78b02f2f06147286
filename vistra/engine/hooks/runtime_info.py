"""Keeps the runner's MessageHub current: learning rate, momentum, step outputs, metrics."""

from __future__ import annotations

from typing import Any

from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS


@HOOKS.register_module()
class RuntimeInfoHook(Hook):
    """Records ``train/lr`` (and ``train/base_lr`` with several parameter groups) and every
    value the training step returned, as ``train/<name>``; validation and test
    metrics as ``val/<name>``/``test/<name>``. Like MMEngine's, it keeps the runtime info
    ``epoch``, ``iter``, ``max_epochs`` and ``max_iters`` current for hooks that read them
    from the message hub."""

    priority = "VERY_HIGH"

    def before_train(self, runner: Any) -> None:
        hub = runner.message_hub
        for key in ("epoch", "iter", "max_epochs", "max_iters"):
            hub.update_info(key, getattr(runner, key))

    def before_train_epoch(self, runner: Any) -> None:
        runner.message_hub.update_info("epoch", runner.epoch)

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        hub = runner.message_hub
        hub.update_info("iter", runner.iter)
        for name, values in runner.optim_wrapper.get_lr().items():
            hub.update_scalar(f"train/{name}", values[0])

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        for key, value in (outputs or {}).items():
            runner.message_hub.update_scalar(f"train/{key}", float(value))
        grad_norm = getattr(runner.optim_wrapper, "last_grad_norm", None)
        if grad_norm is not None:
            runner.message_hub.update_scalar("train/grad_norm", float(grad_norm))

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        for key, value in (metrics or {}).items():
            if isinstance(value, (int, float)):
                runner.message_hub.update_scalar(f"val/{key}", float(value))

    def after_test_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        for key, value in (metrics or {}).items():
            if isinstance(value, (int, float)):
                runner.message_hub.update_scalar(f"test/{key}", float(value))
