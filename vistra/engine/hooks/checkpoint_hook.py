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


def infer_rule(key: str, greater_keys: list[str], less_keys: list[str]) -> str:
    low = key.lower()
    if any(k.lower() in low for k in greater_keys):
        return "greater"
    if any(k.lower() in low for k in less_keys):
        return "less"
    raise ValueError(
        f"cannot tell whether a larger {key!r} is better; set default_hooks.checkpoint.rule="
        "'greater' or 'less' (or greater_keys / less_keys)"
    )


@HOOKS.register_module()
class CheckpointHook(Hook):
    """MMEngine's CheckpointHook arguments and file names.

    ``epoch_N.pth``/``iter_N.pth`` every ``interval``; ``save_last`` also at the end;
    ``max_keep_ckpts`` removes the oldest *after* the new file is safely written;
    ``save_best='auto'|key|[keys]`` keeps ``best_<key>_epoch_N.pth`` with the rule
    inferred from the key (``rule`` overrides). Best scores and the kept list live in the
    message hub, so they survive a resume.
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
        self.interval = interval
        self.by_epoch = by_epoch
        self.save_optimizer = save_optimizer
        self.save_param_scheduler = save_param_scheduler
        self.out_dir = out_dir
        self.max_keep_ckpts = max_keep_ckpts
        self.save_last = save_last
        self.save_begin = save_begin
        self.filename_tmpl = filename_tmpl or ("epoch_{}.pth" if by_epoch else "iter_{}.pth")
        self.save_best = [save_best] if isinstance(save_best, str) else list(save_best or [])
        rules = rule if isinstance(rule, list) else [rule] * max(1, len(self.save_best))
        if self.save_best and len(rules) != len(self.save_best):
            raise ValueError(
                "default_hooks.checkpoint: rule must be one value or one per save_best key"
            )
        for r in rules:
            if r not in (None, "greater", "less"):
                raise ValueError(f"default_hooks.checkpoint.rule={r!r}: use 'greater' or 'less'")
        self.rules: list[str | None] = rules
        self.greater_keys = GREATER_KEYS + list(greater_keys or [])
        self.less_keys = LESS_KEYS + list(less_keys or [])

    def before_train(self, runner: Any) -> None:
        self.out_dir = str(self.out_dir or runner.work_dir)
        self._pending: str | None = None

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
        path = runner.save_checkpoint(
            self.out_dir,
            filename,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
        )
        if path is None:  # not rank 0
            return
        kept = list(runner.message_hub.get_info("keep_ckpts", []))
        if filename not in kept:
            kept.append(filename)
        if self.max_keep_ckpts > 0:
            while len(kept) > self.max_keep_ckpts:
                old = Path(self.out_dir) / kept.pop(0)
                old.unlink(missing_ok=True)
        runner.message_hub.update_info("keep_ckpts", kept)

    # ------------------------------------------------------------------ best
    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        if self.save_best and metrics:
            self._save_best(runner, metrics)
        pending, self._pending = getattr(self, "_pending", None), None
        if pending:
            self._save(runner, pending)

    def _save_best(self, runner: Any, metrics: dict[str, Any]) -> None:
        keys = list(self.save_best)
        if keys == ["auto"]:
            keys = [next(k for k, v in metrics.items() if isinstance(v, (int, float)))]
        for key, rule in zip(keys, self.rules):
            if key not in metrics:
                raise KeyError(
                    f"default_hooks.checkpoint.save_best={key!r} is not a metric of this run; "
                    f"metrics: {sorted(metrics)}"
                )
            self._maybe_save_best(
                runner,
                key,
                rule or infer_rule(key, self.greater_keys, self.less_keys),
                metrics[key],
                len(keys) > 1,
            )

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
        progress = f"{'epoch' if self.by_epoch else 'iter'}_{runner.epoch if self.by_epoch else runner.iter}.pth"
        name = f"best_{key.replace('/', '_')}_{progress}"
        out_dir = Path(self.out_dir or runner.work_dir)
        previous = hub.get_info(ckpt_key)
        path = runner.save_checkpoint(
            str(out_dir), name, save_optimizer=False, save_param_scheduler=False
        )
        hub.update_info(score_key, float(value))
        hub.update_info(ckpt_key, name)
        if path is not None and previous and previous != name:
            (out_dir / Path(previous).name).unlink(missing_ok=True)
        if path is not None:
            unit = "epoch" if self.by_epoch else "iter"
            at = runner.epoch if self.by_epoch else runner.iter
            logger.info(
                "The best checkpoint with %.4f %s at %d %s is saved to %s.",
                value,
                key,
                at,
                unit,
                name,
            )
