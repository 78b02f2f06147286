"""Checkpoint files on disk: atomic save, safe load.

Format (DESIGN §4): a ``torch.save`` dict ``{meta, state_dict, optimizer, param_schedulers,
message_hub, loop_state}`` holding only tensors and plain Python values, so that every
checkpoint loads with ``torch.load(..., weights_only=True)``.

Writes go to a temporary file in the same directory, are flushed and fsynced, then
``os.replace``d over the target: a crash or kill mid-write leaves the previous file intact.
Reads are ``weights_only`` with the few MMEngine/numpy globals that OpenMMLab checkpoints
pickle allow-listed as stand-ins (:mod:`vistra.checkpoint.mmengine_compat`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vistra.checkpoint.errors import CheckpointError
from vistra.checkpoint.mmengine_compat import mmengine_safe_globals
from vistra.checkpoint.sources import first_line, is_url, load_url, resolve_source

logger = logging.getLogger("vistra")

UNSAFE_ENV = "VISTRA_ALLOW_UNSAFE_LOAD"


# ----------------------------------------------------------------------------- save
def save_checkpoint(checkpoint: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(checkpoint), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- load
def load_checkpoint_file(
    source: str | Path, map_location: str | torch.device = "cpu", allow_unsafe: bool = False
) -> dict[str, Any]:
    """Read a checkpoint from a path or an ``http(s)://`` URL, safely.

    Files load with ``weights_only=True`` (MMEngine's training checkpoints included, see
    :mod:`~vistra.checkpoint.mmengine_compat`). A file that needs arbitrary unpickling is
    refused with a message saying how to opt in (``allow_unsafe`` or the
    ``VISTRA_ALLOW_UNSAFE_LOAD=1`` environment variable) — only for files you trust.
    ``.safetensors`` files are read with safetensors. URLs go through the torch hub cache,
    hash-checked when the file name carries a hash (``name-<sha256 prefix>.pth``).
    """
    source = resolve_source(str(source))
    allow_unsafe = allow_unsafe or os.environ.get(UNSAFE_ENV, "") not in ("", "0")
    if is_url(source):
        with mmengine_safe_globals():
            return load_url(source, map_location, weights_only=not allow_unsafe)
    path = Path(source).expanduser()
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            near = sorted(p.name for p in path.parent.glob("*.pth"))[-5:]
            hint = f"; checkpoints in {path.parent}: {', '.join(near)}" if near else ""
        raise CheckpointError(f"checkpoint file not found: {path}{hint}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return {"state_dict": load_file(str(path), device=str(map_location))}
    try:
        with mmengine_safe_globals():
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # weights_only refusals raise UnpicklingError
        if _is_unsafe_refusal(exc):
            if allow_unsafe:
                logger.warning("loading %s with full unpickling (unsafe load was allowed)", path)
                return torch.load(path, map_location=map_location, weights_only=False)
            raise CheckpointError(
                f"{path} holds pickled Python objects that a safe load refuses "
                f"({first_line(exc)}). If you trust the file, set {UNSAFE_ENV}=1 or "
                "--cfg-options allow_unsafe_load=True"
            ) from exc
        raise CheckpointError(
            f"cannot read checkpoint {path}: {first_line(exc)} (corrupt or truncated?)"
        ) from exc


def _is_unsafe_refusal(exc: Exception) -> bool:
    text = str(exc)
    return "weights_only" in text or "Unsupported global" in text or "WeightsUnpickler" in text


def is_loadable(path: str | Path) -> bool:
    """True when ``path`` is a complete, safely loadable checkpoint."""
    try:
        ckpt = load_checkpoint_file(path)
    except CheckpointError:
        return False
    return isinstance(ckpt, dict)
