"""Saves checkpoints every N epochs/iterations, the last one, and the best by a metric."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS

logger = logging.getLogger("vistra")

# MMEngine's rule inference: a metric name containing one of these is better when larger
# (resp. smaller); matching is case-insensitive.
GREATER_KEYS = ["acc", "top", "AR@", "auc", "precision", "mAP", "mDice", "mIoU", "mAcc", "aAcc"]
LESS_KEYS = ["loss"]


def infer_rule(
    key: str,
    greater_keys: list[str],
    less_keys: list[str],
    where: str = "default_hooks.checkpoint",
) -> str:
    """MMEngine's order: an exact (case-insensitive) match in ``greater_keys`` then in
    ``less_keys``, then a substring match in the same order."""
    low = key.lower()
    greater = [k.lower() for k in greater_keys]
    less = [k.lower() for k in less_keys]
    if low in greater:
        return "greater"
    if low in less:
        return "less"
    if any(k in low for k in greater):
        return "greater"
    if any(k in low for k in less):
        return "less"
    raise ValueError(
        f"cannot tell whether a larger {key!r} is better; set {where}.rule='greater' or "
        "'less' (or greater_keys / less_keys)"
    )


def _as_list(value: str | list[str] | tuple | None) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@HOOKS.register_module()
class CheckpointHook(Hook):
    """MMEngine's CheckpointHook arguments and file names.

    ``epoch_N.pth``/``iter_N.pth`` (or ``filename_tmpl``) every ``interval`` from
    ``save_begin``; ``save_last`` also at the end; ``max_keep_ckpts`` removes the oldest
    periodic file *after* the new one is safely written. ``save_best='auto'|key|[keys]``
    keeps ``best_<key>_<filename_tmpl of the epoch>`` with the rule inferred from the key
    (``rule`` overrides; ``greater_keys``/``less_keys`` replace the default lists). An
    ``out_dir`` gets the work dir's name appended, as in MMEngine. Best scores, best file
    names and the kept files live in the message hub, so they survive a resume. Best
    files are never named by ``last_checkpoint``: they are not resume points.
    """

    priority = "VERY_LOW"

    def __init__(
        self,
        interval: int = -1,
        by_epoch: bool = True,
        save_optimizer: bool = True,
        save_param_scheduler: bool = True,
        out_dir: str | None = None,
        max_keep_ckpts: int = -1,
        save_last: bool = True,
        save_best: str | list[str] | None = None,
        rule: str | list[str] | None = None,
        greater_keys: list[str] | None = None,
        less_keys: list[str] | None = None,
        file_client_args: dict | None = None,
        filename_tmpl: str | None = None,
        backend_args: dict | None = None,
        published_keys: str | list[str] | None = None,
        save_begin: int = 0,
    ) -> None:
        if save_begin < 0:
            raise ValueError(f"default_hooks.checkpoint.save_begin must be >= 0, got {save_begin}")
        self.interval = interval
        self.by_epoch = by_epoch
        self.save_optimizer = save_optimizer
        self.save_param_scheduler = save_param_scheduler
        self.out_dir = out_dir
        self._out_root = out_dir  # as configured; out_dir gets the work dir name in before_train
        self.max_keep_ckpts = max_keep_ckpts
        self.save_last = save_last
        self.save_begin = save_begin
        self.filename_tmpl = filename_tmpl or ("epoch_{}.pth" if by_epoch else "iter_{}.pth")
        self.greater_keys = _as_list(greater_keys) if greater_keys is not None else GREATER_KEYS
        self.less_keys = _as_list(less_keys) if less_keys is not None else LESS_KEYS
        self.save_best = _as_list(save_best)
        self.rules = self._init_rules(_as_list(rule))
        self._pending: str | None = None

    def _init_rules(self, rules: list) -> list[str | None]:
        """One rule per save_best key; None where it is inferred later ('auto')."""
        keys = self.save_best
        if "auto" in keys and len(keys) > 1:
            raise ValueError("default_hooks.checkpoint.save_best: 'auto' must be the only key")
        if len(set(keys)) != len(keys):
            raise ValueError(f"default_hooks.checkpoint.save_best has duplicate keys: {keys}")
        for r in rules:
            if r not in (None, "greater", "less"):
                raise ValueError(f"default_hooks.checkpoint.rule={r!r}: use 'greater' or 'less'")
        if not keys:
            return []
        if len(rules) > 1 and len(rules) != len(keys):
            raise ValueError(
                f"default_hooks.checkpoint: rule has {len(rules)} values for {len(keys)} "
                "save_best keys; give one rule or one per key"
            )
        rules = (rules or [None]) * (len(keys) if len(rules) <= 1 else 1)
        return [
            r if r is not None or k == "auto" else infer_rule(k, self.greater_keys, self.less_keys)
            for k, r in zip(keys, rules)
        ]

    def before_train(self, runner: Any) -> None:
        work_dir, root = Path(runner.work_dir), self._out_root
        if root is None or Path(root).resolve() == work_dir.resolve():
            self.out_dir = str(work_dir)
        else:
            self.out_dir = str(Path(root) / work_dir.name)  # MMEngine's layout
        self._pending = None
        if runner.rank == 0 and self.out_dir != str(work_dir):
            logger.info("Checkpoints will be saved to %s.", self.out_dir)
        if self.max_keep_ckpts > 0:  # a resumed run may keep fewer than before
            kept = list(runner.message_hub.get_info("keep_ckpts", []))
            self._remove_oldest(runner, kept, self.max_keep_ckpts)
            runner.message_hub.update_info("keep_ckpts", kept)

    def _save_or_defer(self, runner: Any, filename: str) -> None:
        # When validation follows right away, save after it: the file then carries this
        # validation's best-score state, so a resume from it keeps best_* handling right.
        if runner.train_loop.val_due:
            self._pending = filename
        else:
            self._save(runner, filename)

    # ------------------------------------------------------------------ periodic
    def after_train_epoch(self, runner: Any) -> None:
        if not self.by_epoch:
            return
        if self.every_n_epochs(runner, self.interval, self.save_begin) or (
            self.save_last and self.is_last_train_epoch(runner)
        ):
            self._save_or_defer(runner, self.filename_tmpl.format(runner.epoch + 1))

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        if self.by_epoch:
            return
        if self.every_n_train_iters(runner, self.interval, self.save_begin) or (
            self.save_last and self.is_last_train_iter(runner)
        ):
            self._save_or_defer(runner, self.filename_tmpl.format(runner.iter + 1))

    def _save(self, runner: Any, filename: str) -> None:
        # The kept list goes into the hub *before* the save, so the checkpoint itself knows
        # it is kept (a run resumed from it deletes it in turn); files go only after.
        kept = list(runner.message_hub.get_info("keep_ckpts", []))
        if filename not in kept:
            kept.append(filename)
        if self.max_keep_ckpts > 0:
            runner.message_hub.update_info("keep_ckpts", kept[-self.max_keep_ckpts :])
        path = runner.save_checkpoint(
            self.out_dir,
            filename,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
        )
        if self.max_keep_ckpts > 0 and path is not None:
            self._remove_oldest(runner, kept, self.max_keep_ckpts)

    def _remove_oldest(self, runner: Any, kept: list[str], keep: int) -> None:
        """Drop names from the front of ``kept`` (in place) and, on rank 0, their files."""
        while len(kept) > keep:
            old = kept.pop(0)
            if runner.rank == 0:
                (Path(self.out_dir or runner.work_dir) / old).unlink(missing_ok=True)

    def after_train(self, runner: Any) -> None:
        # A save deferred to a validation that never came (e.g. training stopped first)
        # is written now rather than lost.
        pending, self._pending = self._pending, None
        if pending:
            self._save(runner, pending)

    # ------------------------------------------------------------------ best
    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        if self.save_best and metrics:
            self._save_best(runner, metrics)
        elif self.save_best:
            logger.warning("no validation metrics: the best checkpoint is not updated")
        pending, self._pending = self._pending, None
        if pending:
            self._save(runner, pending)

    def _save_best(self, runner: Any, metrics: dict[str, Any]) -> None:
        keys, rules = list(self.save_best), list(self.rules)
        if keys == ["auto"]:  # the first metric, as MMEngine
            numeric = [k for k, v in metrics.items() if isinstance(v, (int, float))]
            if not numeric:
                raise ValueError(f"save_best='auto' found no numeric metric in {sorted(metrics)}")
            keys = numeric[:1]
            rules = [rules[0] or infer_rule(keys[0], self.greater_keys, self.less_keys)]
        for key, rule in zip(keys, rules):
            if key not in metrics:
                raise KeyError(
                    f"default_hooks.checkpoint.save_best={key!r} is not a metric of this run; "
                    f"metrics: {sorted(metrics)}"
                )
            self._maybe_save_best(runner, key, rule, metrics[key], len(keys) > 1)

    def _maybe_save_best(
        self, runner: Any, key: str, rule: str, value: float, several: bool
    ) -> None:
        hub = runner.message_hub
        score_key = f"best_score_{key}" if several else "best_score"
        ckpt_key = f"best_ckpt_{key}" if several else "best_ckpt"
        best = hub.get_info(score_key, -math.inf if rule == "greater" else math.inf)
        better = value > best if rule == "greater" else value < best
        if not better:
            return
        unit, at = ("epoch", runner.epoch) if self.by_epoch else ("iter", runner.iter)
        name = f"best_{key}_{self.filename_tmpl.format(at)}".replace("/", "_")
        previous = hub.get_info(ckpt_key)
        hub.update_info(score_key, float(value))
        hub.update_info(ckpt_key, name)
        path = runner.save_checkpoint(
            str(self.out_dir or runner.work_dir),
            name,
            save_optimizer=False,
            save_param_scheduler=False,
            update_last=False,  # a best file is not where a resume continues from
        )
        if path is None:  # not rank 0
            return
        if previous and previous != name:
            (path.parent / Path(previous).name).unlink(missing_ok=True)
            logger.info("The previous best checkpoint %s is removed", previous)
        logger.info(
            "The best checkpoint with %.4f %s at %d %s is saved to %s.", value, key, at, unit, name
        )
