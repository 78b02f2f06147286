"""Exact resume: which checkpoint to continue from, what a checkpoint records about its run,
and putting that state back into a Runner.

The ``meta`` block written by ``checkpoint_meta`` is what resuming reads back: the seed (so
data order and augmentation continue), the flattened config (to warn about changes) and the
counters a checkpoint without ``loop_state`` falls back on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import vistra
from vistra import checkpoint as ckpt_io
from vistra.dist import slurm, unwrap
from vistra.engine import build as B
from vistra.engine.run_setup import pretty_config

if TYPE_CHECKING:
    from vistra.engine.runner import Runner

logger = logging.getLogger("vistra")

# Config keys whose change between a checkpoint and a resumed run is expected.
_IGNORED_CHANGES = ("resume", "load_from", "work_dir", "launcher", "randomness.seed")


def resume_source(cfg: Any, work_dir: str) -> str | None:
    """The checkpoint to resume from: ``--resume PATH``, or the newest in the work dir."""
    resume, load_from = cfg.get("resume", False), cfg.get("load_from")
    if not resume and slurm.restart_count() > 0:
        logger.warning(
            "restart %d of this job (requeued or restarted by its launcher): resuming from "
            "the latest checkpoint in %s",
            slurm.restart_count(),
            work_dir,
        )
        resume, load_from = "auto", None
    if not resume:
        return None
    if isinstance(resume, str) and resume != "auto":
        return resume
    if load_from:
        return str(load_from)
    latest = ckpt_io.find_latest_checkpoint(work_dir)
    if latest is None:
        logger.warning("resume: no checkpoint found in %s; training starts from scratch", work_dir)
        return None
    return str(latest)


def adopt_seed(cfg: Any, seed: int, rank: int, checkpoint: dict[str, Any]) -> int:
    """The seed to continue with: the checkpointed run's, so data order and augmentation
    continue exactly (the RNGs are reseeded with it); a different explicit seed is
    honoured with a warning."""
    saved = checkpoint.get("meta", {}).get("seed")
    randomness = dict(cfg.get("randomness") or {})
    if saved is None or saved == seed:
        return seed
    if randomness.get("seed") is not None:
        logger.warning(
            "resuming with seed %d, but the checkpoint was trained with seed %d", seed, saved
        )
        return seed
    seed = int(saved)
    # the environment block above shows the seed drawn before the checkpoint was read
    logger.info("seed %d (the checkpoint's, so data order and augmentation continue)", saved)
    rank_seed = seed + rank if randomness.get("diff_rank_seed", False) else seed
    B.set_random_seed(rank_seed, bool(randomness.get("deterministic", False)))
    return seed


def restore_checkpoint(runner: Runner, path: str, checkpoint: dict[str, Any]) -> list | None:
    """Put weights, optimizer, schedulers, message hub and loop counters back into a
    runner whose training parts are built. Returns the saved per-rank RNG states, which
    the caller applies last so nothing drawn after them shifts the sequence."""
    _warn_config_changes(
        checkpoint.get("meta", {}).get("cfg_flat"), flatten_config(runner.cfg), path
    )
    _load_exactly(runner, path, ckpt_io.revise_keys(checkpoint["state_dict"]))
    if "optimizer" in checkpoint:
        runner.optim_wrapper.load_state_dict(checkpoint["optimizer"])
    else:
        logger.warning("%s has no optimizer state; the optimizer starts fresh", path)
    if ckpt_io.is_mmengine_checkpoint(checkpoint):  # maps what it can, logs the rest
        ckpt_io.mmengine_compat.restore_state(
            checkpoint, runner.param_schedulers, runner.message_hub, path
        )
    else:
        states = checkpoint.get("param_schedulers", [])
        for scheduler, state in zip(runner.param_schedulers, states):
            scheduler.load_state_dict(state)
        runner.message_hub.load_state_dict(checkpoint.get("message_hub", {}))
    meta = checkpoint.get("meta", {})
    loop_state = checkpoint.get("loop_state") or {
        "epoch": meta.get("epoch", 0),
        "iter": meta.get("iter", 0),
    }
    runner.train_loop.load_loop_state(loop_state)
    logger.info(
        "resumed from %s: epoch %d, iter %d, %d batches into the data epoch",
        path,
        runner.epoch,
        runner.iter,
        loop_state.get("batch_in_epoch", 0),
    )
    return loop_state.get("rng")


def checkpoint_meta(runner: Runner, loop_state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``meta``: the run it came from, readable without the model."""
    dataset = getattr(runner.train_dataloader, "dataset", None)
    return {
        "epoch": loop_state.get("epoch", 0),
        "iter": loop_state.get("iter", 0),
        "cfg": pretty_config(runner.cfg),
        "cfg_flat": flatten_config(runner.cfg),
        "seed": runner.seed,
        "experiment_name": runner.experiment_name,
        "time": time.strftime("%Y%m%d_%H%M%S"),
        "vistra_version": vistra.__version__,
        "dataset_meta": _plain(getattr(dataset, "metainfo", None)),
    }


def flatten_config(cfg: Any, prefix: str = "") -> dict[str, str]:
    """``{"a.b.c": repr(value)}``: plain strings, so it loads with ``weights_only=True``."""
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, name + "."))
        else:
            out[name] = repr(value)
    return out


def _warn_config_changes(old: dict[str, str] | None, new: dict[str, str], path: str) -> None:
    if not old:
        return
    changed = sorted(
        k
        for k in set(old) | set(new)
        if old.get(k) != new.get(k) and not k.startswith(_IGNORED_CHANGES)
    )
    if changed:
        lines = [f"  {k}: {old.get(k, '<unset>')} -> {new.get(k, '<unset>')}" for k in changed[:20]]
        logger.warning("config changed since %s was written:\n%s", path, "\n".join(lines))


def _plain(value: Any) -> Any:
    """Dataset metainfo as values ``weights_only=True`` loading accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _load_exactly(runner: Runner, path: str, state_dict: dict[str, Any]) -> None:
    """A resume needs every weight, with its shape: else it is another model's checkpoint."""
    model = unwrap(runner.model)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and hasattr(state_dict[k], "shape") and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{len(mismatched)} shapes differ (checkpoint vs model: {', '.join(mismatched[:2])})"
            if mismatched
            else "",
            f"{len(missing)} weights missing ({', '.join(missing[:2])})" if missing else "",
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:2])})" if unexpected else "",
        ]
        raise ckpt_io.CheckpointError(
            f"cannot resume from {path}: it is not a checkpoint of this model: "
            f"{'; '.join(p for p in parts if p)}. Use --load-from to start from its weights"
        )
    model.load_state_dict(state_dict, strict=True)
