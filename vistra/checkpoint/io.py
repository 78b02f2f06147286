"""Checkpoint files on disk: atomic save, safe load.

Format (DESIGN §4): a ``torch.save`` dict ``{meta, state_dict, optimizer, param_schedulers,
message_hub, loop_state}`` holding only tensors and plain Python values, so that every
checkpoint loads with ``torch.load(..., weights_only=True)``.

Writes go to a temporary file in the same directory, are flushed and fsynced, then
``os.replace``d over the target: a crash or kill mid-write leaves the previous file intact,
and a failed write (full disk, quota, read-only file system) is one :class:`CheckpointError`
line that names the file and the checkpoint that is kept.
Reads are ``weights_only`` with the few MMEngine/numpy globals that OpenMMLab checkpoints
pickle allow-listed as stand-ins (:mod:`vistra.checkpoint.mmengine_compat`).
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import tempfile
import time
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
    """Write ``checkpoint`` to ``path`` atomically (temp file, fsync, ``os.replace``).

    A write that fails (a full disk, a quota, a read-only file system, ...) removes its
    temporary file and raises :class:`CheckpointError` with one line naming the file, the
    cause, the space needed and the checkpoint that is kept. Temporary files that killed
    writes of the same file left behind are removed after a successful write.
    """
    path = Path(path)
    started = time.time()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {path}: {_reason(exc)}") from exc
    writer = None
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _Writer(f)
            torch.save(dict(checkpoint), writer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = _os_error(exc, writer)
        if cause is None:
            raise
        needed = max(_tensor_bytes(checkpoint), writer.written if writer else 0)
        raise CheckpointError(
            f"cannot write checkpoint {path}: {_reason(cause, needed, path.parent)}; {_kept(path)}"
        ) from exc
    _fsync_dir(path.parent)
    _remove_stale_temps(path, started)
    return path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path``'s content with ``text`` atomically; a failed write keeps the old
    content and raises :class:`CheckpointError`."""
    path = Path(path)
    started = time.time()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        kept = "it keeps its previous content" if path.exists() else "it was not created"
        raise CheckpointError(f"cannot write {path}: {_reason(exc)}; {kept}") from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    _remove_stale_temps(path, started)


class _Writer:
    """The file object ``torch.save`` writes to: counts bytes and keeps the first OSError,
    which torch's zip writer would otherwise turn into an opaque RuntimeError."""

    def __init__(self, f: Any) -> None:
        self.f, self.written, self.error = f, 0, None

    def write(self, data: bytes) -> int:
        try:
            n = self.f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise
        self.written += len(data)
        return n

    def flush(self) -> None:
        try:
            self.f.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise


def _os_error(exc: BaseException, writer: _Writer | None) -> OSError | None:
    """The OSError behind a failed write: raised directly, recorded by the writer, or in
    the exception's chain."""
    if isinstance(exc, OSError):
        return exc
    if writer is not None and writer.error is not None:
        return writer.error
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError):
            return link
        link = link.__cause__ or link.__context__
    return None


_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _reason(exc: OSError, needed: int = 0, directory: Path | None = None) -> str:
    """'no space left on device (12.3 MB needed, 4.0 MB free)' and the like."""
    text = os.strerror(exc.errno).lower() if exc.errno else (str(exc) or type(exc).__name__)
    if exc.errno in _SPACE and needed:
        text += f" ({needed / 1e6:.1f} MB needed"
        free = _free_bytes(directory) if directory is not None else None
        text += f", {free / 1e6:.1f} MB free)" if free is not None else ")"
    return text


def _free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a checkpoint: about the size of the file."""
    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().nbytes()
    if isinstance(obj, Mapping):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _kept(path: Path) -> str:
    """Which checkpoint a failed write of ``path`` leaves in place, for the error line."""
    pointer = path.parent / "last_checkpoint"
    try:
        named = Path(pointer.read_text().strip()) if pointer.is_file() else None
    except OSError:
        named = None
    if named is not None:
        named = named if named.is_absolute() else path.parent / named
        if named.is_file():
            return f"the previous checkpoint {named.name} is kept"
    if path.is_file():
        return f"the existing {path.name} is kept"
    older = [p for p in path.parent.glob("*.pth") if p.is_file()]
    if older:
        newest = max(older, key=lambda p: p.stat().st_mtime)
        return f"the previous checkpoint {newest.name} is kept"
    return f"no earlier checkpoint exists in {path.parent}"


def _remove_stale_temps(path: Path, before: float) -> None:
    """Remove temporary files of earlier, killed writes of ``path`` (older than ``before``,
    so that a write still in progress elsewhere is left alone)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if stale.stat().st_mtime < before:
                stale.unlink()
                logger.info("removed %s, left by an interrupted write", stale.name)
        except OSError:
            pass


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
