"""Checkpoint files: atomic save, safe load, key remapping and a load report.

Format (DESIGN §4): a ``torch.save`` dict ``{meta, state_dict, optimizer, param_schedulers,
message_hub, loop_state}`` holding only tensors and plain Python values, so that every
checkpoint loads with ``torch.load(..., weights_only=True)``.

Writes go to a temporary file in the same directory, are flushed and fsynced, then
``os.replace``d over the target: a crash or kill mid-write leaves the previous file intact.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger("vistra")

UNSAFE_ENV = "VISTRA_ALLOW_UNSAFE_LOAD"

# MMCV's model-zoo shorthands used by MMSegmentation configs (``pretrained='open-mmlab://...'``).
OPEN_MMLAB_URLS = {
    "resnet50_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    "resnet101_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
    "resnet18_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet18_v1c-b5776b93.pth",
}


def resolve_source(source: str) -> str:
    """``open-mmlab://name`` and ``torchvision://name`` to the URL they stand for."""
    if source.startswith("open-mmlab://"):
        name = source[len("open-mmlab://") :]
        if name not in OPEN_MMLAB_URLS:
            raise CheckpointError(
                f"unknown {source!r}; known: {', '.join(sorted(OPEN_MMLAB_URLS))}"
            )
        return OPEN_MMLAB_URLS[name]
    if source.startswith("torchvision://"):
        import torchvision.models

        name = source[len("torchvision://") :]
        try:
            return torchvision.models.get_weight(f"{_tv_enum(name)}.DEFAULT").url
        except Exception as exc:
            raise CheckpointError(f"unknown {source!r}: {exc}") from None
    return source


def _tv_enum(name: str) -> str:
    # 'resnet50' -> 'ResNet50_Weights'
    import torchvision.models

    for weights in torchvision.models.list_models():
        if weights == name:
            return type(torchvision.models.get_model_weights(name).DEFAULT).__name__
    raise KeyError(name)


CHECKPOINT_NAME = re.compile(r"^(epoch|iter)_(\d+)\.pth$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, unsafe or does not fit the model."""


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

    Files load with ``weights_only=True``. A file that needs arbitrary unpickling is refused
    with a message saying how to opt in (``allow_unsafe`` or the ``VISTRA_ALLOW_UNSAFE_LOAD=1``
    environment variable) — only for files you trust. ``.safetensors`` files are read with
    safetensors. URLs go through the torch hub cache, hash-checked when the file name carries
    a hash (``name-<sha256 prefix>.pth``).
    """
    source = resolve_source(str(source))
    allow_unsafe = allow_unsafe or os.environ.get(UNSAFE_ENV, "") not in ("", "0")
    if source.startswith(("http://", "https://")):
        return _load_url(source, map_location, allow_unsafe)
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
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # weights_only refusals raise UnpicklingError
        if _is_unsafe_refusal(exc):
            if allow_unsafe:
                logger.warning("loading %s with full unpickling (unsafe load was allowed)", path)
                return torch.load(path, map_location=map_location, weights_only=False)
            raise CheckpointError(
                f"{path} holds pickled Python objects that a safe load refuses "
                f"({_first_line(exc)}). If you trust the file, set {UNSAFE_ENV}=1 or "
                "--cfg-options allow_unsafe_load=True"
            ) from exc
        raise CheckpointError(
            f"cannot read checkpoint {path}: {_first_line(exc)} (corrupt or truncated?)"
        ) from exc


def _is_unsafe_refusal(exc: Exception) -> bool:
    text = str(exc)
    return "weights_only" in text or "Unsupported global" in text or "WeightsUnpickler" in text


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:  # torch's refusal text names the global on a line of its own
        if "Unsupported global" in ln or "Unsupported operand" in ln:
            return ln
    return lines[0] if lines else type(exc).__name__


def _load_url(url: str, map_location: str | torch.device, allow_unsafe: bool) -> dict[str, Any]:
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location=map_location, check_hash=True, weights_only=not allow_unsafe
        )
    except Exception as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
        raise CheckpointError(
            f"cannot load {url}: {_first_line(exc)}. Without network access, place the file at {cache}"
        ) from exc


def is_loadable(path: str | Path) -> bool:
    """True when ``path`` is a complete, safely loadable checkpoint."""
    try:
        ckpt = load_checkpoint_file(path)
    except CheckpointError:
        return False
    return isinstance(ckpt, dict)


# ----------------------------------------------------------------------------- state dicts
def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights inside a checkpoint (``state_dict`` or ``model`` entry, or the dict itself)."""
    for key in ("state_dict", "model", "module"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return dict(checkpoint[key])
    return {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def revise_keys(
    state_dict: Mapping[str, Any],
    rules: list[tuple[str, str]] = ((r"^module\.", ""),),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Rename keys by regex ``(pattern, replacement)`` rules; by default strip DDP's ``module.``."""
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


@dataclass
class LoadReport:
    """What loading a state dict into a model did, key by key."""

    source: str
    target: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)

    @property
    def unset(self) -> list[str]:
        """Model weights the checkpoint left at their initial values."""
        return self.missing + [k for k, _, _ in self.mismatched]

    def table(self, max_names: int = 6) -> str:
        rows = [
            ("loaded", len(self.loaded), ""),
            ("missing", len(self.missing), _names(self.missing, max_names)),
            ("unexpected", len(self.unexpected), _names(self.unexpected, max_names)),
            (
                "shape mismatch",
                len(self.mismatched),
                _names(
                    [f"{k} ckpt {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched],
                    max_names,
                ),
            ),
        ]
        width = max(len("names"), *(len(r[2]) for r in rows))  # "names" fits, rows empty or not
        line = f"+----------------+-------+-{'-' * width}-+"
        out = [f"load report: {self.source} -> {self.target}", line]
        out.append(f"| {'keys':<14} | {'count':>5} | {'names':<{width}} |")
        out.append(line)
        out += [f"| {name:<14} | {count:>5} | {names:<{width}} |" for name, count, names in rows]
        out.append(line)
        return "\n".join(out)


def _names(keys: list[str], limit: int) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> LoadReport:
    """Load what fits; report loaded, missing, unexpected and shape-mismatched keys."""
    own = model.state_dict()
    report = LoadReport(source=source, target=type(model).__name__)
    fitting = {}
    for key, value in state_dict.items():
        if key in own and isinstance(value, torch.Tensor) and value.shape != own[key].shape:
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            # keys the model lacks still go to torch: a module's _load_from_state_dict may
            # rename them (older checkpoint layouts); torch reports what stays unexpected
            fitting[key] = value
    result = model.load_state_dict(fitting, strict=False)
    mismatched = {m for m, _, _ in report.mismatched}
    report.missing = [k for k in result.missing_keys if k not in mismatched]
    report.unexpected = list(result.unexpected_keys)
    loaded = set(own) - set(result.missing_keys)
    report.loaded = [k for k in own if k in loaded]
    return report


def load_pretrained(
    module: nn.Module, checkpoint: str, prefix: str | None = None, map_location: str = "cpu"
) -> LoadReport:
    """Load weights into ``module`` for ``init_cfg=dict(type='Pretrained', ...)``.

    With ``prefix='backbone.'`` only keys starting with it are used, prefix stripped.
    The key table is logged; missing weights are a warning here (fine-tuning loads
    partial weights on purpose), not an error.
    """
    ckpt = load_checkpoint_file(checkpoint, map_location=map_location)
    state = revise_keys(extract_state_dict(ckpt))
    if prefix:
        prefix = prefix if prefix.endswith(".") else prefix + "."
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f"no key in {checkpoint} starts with prefix {prefix!r}")
    report = load_state_dict(module, state, source=str(checkpoint))
    if not report.loaded and report.unset:  # partial loads are normal; loading nothing is not
        logger.error("%s", report.table())
        raise CheckpointError(
            f"{checkpoint} has no weight for {type(module).__name__}: its keys look like "
            f"{', '.join(sorted(state)[:3])}..., the model's like {', '.join(report.unset[:3])}...; "
            "a checkpoint of another model, or the wrong prefix"
            + (f" (prefix={prefix!r})" if prefix else " (try prefix='backbone.')")
        )
    level = logging.WARNING if report.unset or report.unexpected else logging.INFO
    logger.log(level, "%s", report.table())
    return report


# ----------------------------------------------------------------------------- finding
def checkpoint_number(path: Path) -> int:
    m = CHECKPOINT_NAME.match(path.name)
    return int(m.group(2)) if m else -1


def find_latest_checkpoint(work_dir: str | Path) -> Path | None:
    """The newest *loadable* checkpoint in ``work_dir``, or None when there is none.

    ``last_checkpoint`` is tried first (it may hold a path relative to the work dir or an
    absolute one); when that file is corrupt, older ``epoch_N``/``iter_N`` files are tried
    newest first, with a warning naming the skipped file.
    """
    work_dir = Path(work_dir)
    candidates: list[Path] = []
    pointer = work_dir / "last_checkpoint"
    if pointer.is_file():
        target = Path(pointer.read_text().strip())
        candidates.append(target if target.is_absolute() else work_dir / target)
    numbered = [p for p in work_dir.glob("*.pth") if CHECKPOINT_NAME.match(p.name)]
    candidates += sorted(
        numbered, key=lambda p: (p.stat().st_mtime, checkpoint_number(p)), reverse=True
    )
    seen: set[Path] = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        if not path.is_file():
            logger.warning(
                "last_checkpoint names %s, which does not exist; looking for an older one", path
            )
            continue
        if is_loadable(path):
            return path
        logger.warning("checkpoint %s is corrupt or unreadable; trying the previous one", path)
    return None
