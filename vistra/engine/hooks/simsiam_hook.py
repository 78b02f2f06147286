"""``SimSiamHook``: keep the SimSiam predictor's learning rate fixed.

SimSiam (Chen & He, 2021) trains its predictor at a constant learning rate while the rest
of the model follows the schedule. The config marks the predictor's parameter groups
(``paramwise_cfg=dict(custom_keys={'predictor': dict(fix_lr=True)})``, which copies
``fix_lr`` into each group); this hook writes ``lr`` into every such group before each
epoch (``adjust_by_epoch=True``, the default) or before each iteration, after the
schedulers of the previous step have moved it, as MMPretrain and MMSelfSup do.
"""

from __future__ import annotations

from typing import Any

from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS


@HOOKS.register_module()
class SimSiamHook(Hook):
    """Set ``lr`` on the optimizer's ``fix_lr`` groups (when ``fix_pred_lr``)."""

    def __init__(self, fix_pred_lr: bool, lr: float, adjust_by_epoch: bool | None = True) -> None:
        if not isinstance(lr, (int, float)) or lr < 0:
            raise ValueError(f"SimSiamHook lr must be a number >= 0, got {lr!r}")
        self.fix_pred_lr = fix_pred_lr
        self.lr = lr
        self.adjust_by_epoch = adjust_by_epoch

    def _fix(self, runner: Any) -> None:
        if not self.fix_pred_lr:
            return
        for group in runner.optim_wrapper.optimizer.param_groups:
            if group.get("fix_lr"):
                group["lr"] = self.lr

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if not self.adjust_by_epoch:
            self._fix(runner)

    def before_train_epoch(self, runner: Any) -> None:
        self._fix(runner)
