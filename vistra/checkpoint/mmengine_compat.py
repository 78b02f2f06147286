"""Reading checkpoints that MMEngine (and the OpenMMLab packages on it) wrote, safely.

An MMEngine training run pickles a few objects besides tensors and plain values (found in
real ``epoch_N.pth`` files of MMEngine 0.10.7, ``tools/upstream/oracle_mmengine_run.py``):

- ``message_hub.log_scalars``: ``mmengine.logging.history_buffer.HistoryBuffer`` objects,
  whose ``statistics_methods`` dict pickles its methods as ``builtins.getattr(cls, name)``;
  their histories are numpy arrays (``numpy.ndarray``, ``numpy.dtype``,
  ``numpy[._]core.multiarray._reconstruct``) and ``runtime_info`` holds numpy scalars
  (``numpy[._]core.multiarray.scalar``);
- ``param_schedulers``: ``MultiStepLR.milestones`` is a ``collections.Counter``, and
  ``state_dict`` an ``OrderedDict`` (both allowed by torch already);
- configs kept as objects by older runs and hooks: ``mmengine.config.config.ConfigDict``.

``weights_only`` loading resolves a pickled global by its ``module.name`` against an
allow-list; :func:`mmengine_safe_globals` puts plain stand-in classes defined here under the
upstream names (never importing MMEngine), real numpy under numpy's own names, and a
``getattr`` that only looks up attributes of these stand-ins. Everything else a file
pickles is still refused.

Resuming from such a file (see :func:`describe_resume`) restores what maps onto vistra
(weights, optimizer, scheduler state, epoch and iteration); MMEngine keeps no RNG or
sampler position, so vistra's exact-resume guarantee does not hold for it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("vistra")

# ----------------------------------------------------------------------------- stand-ins


class HistoryBuffer:
    """Stand-in for ``mmengine.logging.history_buffer.HistoryBuffer``: the pickled fields
    (``max_length``, ``_log_history``, ``_count_history``, ``statistics_methods``) as
    attributes, nothing else."""

    max_length: int = 0

    def current(self) -> Any:  # the names MMEngine's statistics_methods pickle
        history = getattr(self, "_log_history", ())
        return history[-1] if len(history) else None

    def mean(self, window_size: int | None = None) -> float:
        history = list(getattr(self, "_log_history", ()))[-(window_size or 0) :]
        return float(sum(history) / len(history)) if history else float("nan")

    def min(self, window_size: int | None = None) -> float:
        return float(min(list(getattr(self, "_log_history", ()))[-(window_size or 0) :]))

    def max(self, window_size: int | None = None) -> float:
        return float(max(list(getattr(self, "_log_history", ()))[-(window_size or 0) :]))

    @property
    def data(self) -> tuple[Any, Any]:
        return getattr(self, "_log_history", None), getattr(self, "_count_history", None)


class ConfigDict(dict):
    """Stand-in for ``mmengine.config.config.ConfigDict`` (pickled as ``ConfigDict(dict)``):
    a plain dict with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


STAND_INS: dict[str, type] = {
    "mmengine.logging.history_buffer.HistoryBuffer": HistoryBuffer,
    "mmengine.config.config.ConfigDict": ConfigDict,
}


def _restricted_getattr(obj: Any, name: str) -> Any:
    """``builtins.getattr`` as a pickled global: only public attributes of the stand-ins."""
    if obj in STAND_INS.values() and not name.startswith("_") and hasattr(obj, name):
        return getattr(obj, name)
    raise pickle_error(f"getattr({obj!r}, {name!r}) is not allowed in a weights-only load")


def pickle_error(message: str) -> Exception:
    import pickle

    return pickle.UnpicklingError(message)


def _numpy_globals() -> list[tuple[Any, str]]:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray

    entries: list[tuple[Any, str]] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x
        entries.append((multiarray._reconstruct, f"{module}._reconstruct"))
        entries.append((multiarray.scalar, f"{module}.scalar"))
    # a dtype unpickles as numpy.dtype(...) but BUILDs on its concrete class (Float64DType...)
    for code in np.typecodes["All"]:
        cls = type(np.dtype(code))
        entries.append((cls, f"numpy.dtypes.{cls.__name__}"))
    return entries


def safe_globals() -> list[tuple[Any, str]]:
    """The ``(object, 'module.name')`` pairs an MMEngine checkpoint needs beyond torch's own."""
    return [
        *((cls, name) for name, cls in STAND_INS.items()),
        (_restricted_getattr, "builtins.getattr"),
        *_numpy_globals(),
        (Counter, "collections.Counter"),
    ]


@contextlib.contextmanager
def mmengine_safe_globals() -> Iterator[None]:
    """Allow, for the duration of a ``torch.load(weights_only=True)``, the globals above."""
    with torch.serialization.safe_globals(safe_globals()):
        yield


# ----------------------------------------------------------------------------- resuming
def is_mmengine_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """Written by an MMEngine run (not by vistra): MMEngine's ``meta`` and no ``loop_state``."""
    meta = checkpoint.get("meta")
    if not isinstance(meta, Mapping) or "vistra_version" in meta or "loop_state" in checkpoint:
        return False
    hub = checkpoint.get("message_hub")
    return "mmengine_version" in meta or (isinstance(hub, Mapping) and "log_scalars" in hub)


def scheduler_state(scheduler: Any, state: Mapping[str, Any]) -> tuple[dict | None, str]:
    """MMEngine's state dict of one parameter scheduler as vistra's ``scheduler`` takes it,
    or ``(None, why not)``. The two keep the same attributes (MMEngine semantics); the
    scheduler kind, parameter, window and number of param groups must agree."""
    own = scheduler.state_dict()
    name = type(scheduler).__name__
    for key in ("param_name", "begin", "end", "by_epoch"):
        if key in own and key in state and own[key] != state[key]:
            return None, f"{name}: {key} is {state[key]!r} in the file, {own[key]!r} here"
    if len(state.get("base_values", ())) != len(own.get("base_values", ())):
        return None, f"{name}: the file has {len(state.get('base_values', ()))} param groups"
    missing = sorted(set(own) - set(state))
    if missing:  # a key of vistra's scheduler the file lacks: another scheduler kind
        return None, f"{name}: the file's state lacks {', '.join(missing)} (another scheduler?)"
    mapped = {k: _plain_value(v) for k, v in state.items() if k in own}
    return mapped, ""


def _plain_value(value: Any) -> Any:
    if isinstance(value, Counter):  # MultiStepLR.milestones: vistra keeps a plain dict
        return dict(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# MMEngine runtime_info keys that mean the same in vistra's message hub
_RUNTIME_KEYS = ("best_score",)


def runtime_info(hub_state: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of an MMEngine ``message_hub.runtime_info`` that vistra reads back."""
    info = hub_state.get("runtime_info") or {}
    return {
        k: _plain_value(v)
        for k, v in info.items()
        if isinstance(k, str) and k.startswith(_RUNTIME_KEYS)
    }


def mmengine_version(checkpoint: Mapping[str, Any]) -> str | None:
    """``meta['mmengine_version']`` without the git hash MMEngine appends when it runs
    inside a git checkout (``'0.10.7' + 40 hex digits``)."""
    version = (checkpoint.get("meta") or {}).get("mmengine_version")
    if not isinstance(version, str):
        return None
    return re.sub(r"[0-9a-f]{40}$", "", version) or version


def restore_state(
    checkpoint: Mapping[str, Any], schedulers: list[Any], message_hub: Any, path: str
) -> int:
    """Load an MMEngine checkpoint's scheduler states into vistra's ``schedulers`` (in
    order, where they map) and the runtime info vistra reads into ``message_hub``; log
    what did not map and, in one line, what such a resume cannot restore. Returns the
    number of schedulers restored."""
    states = list(checkpoint.get("param_schedulers") or [])
    if len(states) != len(schedulers):
        logger.warning(
            "%s has %d param scheduler states, this config builds %d: matching them in order",
            path,
            len(states),
            len(schedulers),
        )
    mapped = 0
    for scheduler, state in zip(schedulers, states):
        plain, why = scheduler_state(scheduler, state)
        if plain is None:
            logger.warning("param scheduler state not restored from %s: %s", path, why)
            continue
        scheduler.load_state_dict(plain)
        mapped += 1
    message_hub.load_state_dict({"runtime_info": runtime_info(checkpoint.get("message_hub") or {})})
    logger.warning("%s", describe_resume(checkpoint, mapped, len(schedulers)))
    return mapped


def describe_resume(checkpoint: Mapping[str, Any], schedulers_mapped: int, schedulers: int) -> str:
    """One log line: what an MMEngine-origin resume restored and what it could not."""
    version = mmengine_version(checkpoint) or "unknown"
    restored = ["model", "epoch/iter"]
    if "optimizer" in checkpoint:
        restored.append("optimizer")
    restored.append(f"{schedulers_mapped}/{schedulers} param schedulers")
    return (
        f"resuming an MMEngine {version} checkpoint: restored {', '.join(restored)}; not restored: "
        "message_hub log history, RNG states, sampler position and loop internals (MMEngine "
        "saves none of them), so this run is not an exact continuation of the MMEngine one"
    )
