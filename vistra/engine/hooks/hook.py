"""The hook interface. Hooks observe the loops; they never own backward or the step.

The loops call hook methods at these points (names as in MMEngine, so hooks port)::

    before_run(runner)
    after_load_checkpoint(runner, checkpoint)       # when resuming or loading
    before_train(runner)
    for epoch:
        before_train_epoch(runner)
        for batch_idx, data_batch in train_dataloader:
            before_train_iter(runner, batch_idx, data_batch)
            outputs = <the train step in engine/loops.py>
            after_train_iter(runner, batch_idx, data_batch, outputs)
        after_train_epoch(runner)
        if validating:
            before_val(runner); before_val_epoch(runner)
            for batch: before_val_iter(...); outputs = model.val_step(batch); after_val_iter(...)
            after_val_epoch(runner, metrics); after_val(runner)
        before_save_checkpoint(runner, checkpoint)   # whenever a checkpoint is written
    after_train(runner)
    before_test(runner) / before_test_epoch / before_test_iter / after_test_iter /
        after_test_epoch(runner, metrics) / after_test(runner)
    after_run(runner)

Hooks run in list order, sorted (stably) by ``priority``: a name from :data:`PRIORITIES`
or an int, lower first.
"""

from __future__ import annotations

from typing import Any

PRIORITIES = {
    "HIGHEST": 0,
    "VERY_HIGH": 10,
    "HIGH": 30,
    "ABOVE_NORMAL": 40,
    "NORMAL": 50,
    "BELOW_NORMAL": 60,
    "LOW": 70,
    "VERY_LOW": 90,
    "LOWEST": 100,
}


def priority_value(priority: int | str) -> int:
    if isinstance(priority, int):
        return priority
    try:
        return PRIORITIES[priority.upper()]
    except KeyError:
        raise ValueError(
            f"unknown hook priority {priority!r}; use an int or one of {list(PRIORITIES)}"
        ) from None


class Hook:
    """Base class of hooks; every method is a no-op by default."""

    priority: int | str = "NORMAL"

    def before_run(self, runner: Any) -> None: ...
    def after_run(self, runner: Any) -> None: ...
    def before_train(self, runner: Any) -> None: ...
    def after_train(self, runner: Any) -> None: ...
    def before_val(self, runner: Any) -> None: ...
    def after_val(self, runner: Any) -> None: ...
    def before_test(self, runner: Any) -> None: ...
    def after_test(self, runner: Any) -> None: ...
    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None: ...
    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None: ...
    def before_train_epoch(self, runner: Any) -> None: ...
    def after_train_epoch(self, runner: Any) -> None: ...
    def before_val_epoch(self, runner: Any) -> None: ...
    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None: ...
    def before_test_epoch(self, runner: Any) -> None: ...
    def after_test_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None: ...
    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None: ...
    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None: ...
    def before_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None: ...
    def after_val_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None: ...
    def before_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None: ...
    def after_test_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None: ...

    # Helpers with MMEngine's names, used by interval-based hooks.
    @staticmethod
    def every_n_epochs(runner: Any, n: int, start: int = 0) -> bool:
        dividend = runner.epoch + 1 - start
        return dividend % n == 0 if dividend >= 0 and n > 0 else False

    @staticmethod
    def every_n_train_iters(runner: Any, n: int, start: int = 0) -> bool:
        dividend = runner.iter + 1 - start
        return dividend % n == 0 if dividend >= 0 and n > 0 else False

    @staticmethod
    def every_n_inner_iters(batch_idx: int, n: int) -> bool:
        return (batch_idx + 1) % n == 0 if n > 0 else False

    @staticmethod
    def end_of_epoch(dataloader: Any, batch_idx: int) -> bool:
        return batch_idx + 1 == len(dataloader)

    @staticmethod
    def is_last_train_epoch(runner: Any) -> bool:
        return runner.epoch + 1 == runner.max_epochs

    @staticmethod
    def is_last_train_iter(runner: Any) -> bool:
        return runner.iter + 1 == runner.max_iters
