"""Model weights inside a checkpoint: extraction, key remapping and the load report.

The only renames applied are those upstream's own loader applies: MMEngine's
``load_checkpoint`` strips DDP's ``module.`` prefix (``revise_keys``), and a model converts
older or other-package layouts of its family, as the MMPretrain/MMSegmentation modules do
in ``_load_from_state_dict`` / load pre-hooks (vistra's modules through a
``remap_state_dict(state_dict, prefix)`` method, called here before shapes are compared).
Every rename shows in the report's ``remapped`` row, old key -> new key.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vistra.checkpoint.errors import CheckpointError
from vistra.checkpoint.io import load_checkpoint_file

logger = logging.getLogger("vistra")

# MMEngine's default ``revise_keys`` of ``load_checkpoint``
DDP_PREFIX: list[tuple[str, str]] = [(r"^module\.", "")]


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights inside a checkpoint (``state_dict`` or ``model`` entry, or the dict itself).

    The ``_metadata`` torch attaches to a module's state dict (per-module versions, which
    ``_load_from_state_dict`` hooks read to convert older layouts) is kept.
    """
    for key in ("state_dict", "model", "module"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return _with_metadata(OrderedDict(checkpoint[key]), checkpoint[key])
    return OrderedDict((k, v) for k, v in checkpoint.items() if isinstance(v, torch.Tensor))


def _with_metadata(new: OrderedDict, old: Any) -> OrderedDict:
    metadata = getattr(old, "_metadata", None)
    if metadata is not None:
        new._metadata = metadata  # type: ignore[attr-defined]
    return new


def revise_keys(
    state_dict: Mapping[str, Any],
    rules: list[tuple[str, str]] = DDP_PREFIX,
    renamed: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Rename keys by regex ``(pattern, replacement)`` rules; by default strip DDP's ``module.``.

    Each rename is appended to ``renamed`` as ``(old, new)`` when a list is given.
    """
    out: OrderedDict = OrderedDict()
    for key, value in state_dict.items():
        new = key
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        if new != key and renamed is not None:
            renamed.append((key, new))
        out[new] = value
    return _with_metadata(out, state_dict)


@dataclass
class LoadReport:
    """What loading a state dict into a model did, key by key."""

    source: str
    target: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    remapped: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint key, model key)

    @property
    def unset(self) -> list[str]:
        """Model weights the checkpoint left at their initial values."""
        return self.missing + [k for k, _, _ in self.mismatched]

    def table(self, max_names: int = 6) -> str:
        rows = [
            ("loaded", len(self.loaded), ""),
            ("remapped", len(self.remapped), _renames(self.remapped, max(1, max_names // 2))),
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


def _renames(pairs: list[tuple[str, str]], limit: int) -> str:
    """``old -> new`` per rename; a common prefix rule shows once (``module.* -> *``)."""
    prefixes = {old[: len(old) - len(new)] for old, new in pairs if old.endswith(new)}
    if len(pairs) > 1 and len(prefixes) == 1 and all(old.endswith(new) for old, new in pairs):
        return f"{prefixes.pop()}* -> *"
    return _names([f"{old} -> {new}" for old, new in pairs], limit)


def load_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    revise: list[tuple[str, str]] | None = None,
) -> LoadReport:
    """Load what fits; report loaded, remapped, missing, unexpected and shape-mismatched keys.

    ``revise`` rules (e.g. :data:`DDP_PREFIX`) rename keys first, then every submodule
    with a ``remap_state_dict`` method renames the keys it takes in another layout; the
    model's load-state-dict hooks may rename more. Every rename is in ``report.remapped``.
    """
    report = LoadReport(source=source, target=type(model).__name__)
    state_dict = revise_keys(state_dict, revise or [], report.remapped)  # a copy, renamed
    report.remapped += _remap_layouts(model, state_dict)
    own = model.state_dict()
    fitting: OrderedDict = _with_metadata(OrderedDict(), state_dict)
    for key, value in state_dict.items():
        if key in own and isinstance(value, torch.Tensor) and value.shape != own[key].shape:
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            # keys the model lacks still go to torch: a module's _load_from_state_dict may
            # rename them (older checkpoint layouts); torch reports what stays unexpected
            fitting[key] = value
    with _recording_renames(model, fitting) as hook_renames:
        result = model.load_state_dict(fitting, strict=False)
    mismatched = {m for m, _, _ in report.mismatched}
    report.missing = [k for k in result.missing_keys if k not in mismatched]
    report.unexpected = list(result.unexpected_keys)
    report.remapped += hook_renames
    # keys a hook consumed into new tensors (a conversion rather than a rename)
    accounted = set(own) | set(report.unexpected) | {old for old, _ in hook_renames}
    report.remapped += [(k, "(converted)") for k in fitting if k not in accounted]
    loaded = set(own) - set(result.missing_keys)
    report.loaded = [k for k in own if k in loaded]
    return report


def _remap_layouts(model: nn.Module, state_dict: dict[str, Any]) -> list[tuple[str, str]]:
    """Let each submodule with ``remap_state_dict(state_dict, prefix)`` rename, in place,
    the keys it accepts in another package's layout, before keys and shapes are compared
    (protocol: ``vistra.models.layers.key_remap``; needs no import of it)."""
    renamed: list[tuple[str, str]] = []
    for name, module in model.named_modules():
        remap = getattr(module, "remap_state_dict", None)
        if callable(remap):
            renamed += remap(state_dict, f"{name}." if name else "")
    return renamed


class _recording_renames:
    """While loading, note keys that load hooks moved (same tensor object, new name).

    A pre-hook registered last on every module sees the state dict after the module's own
    hooks (and its parents' ``_load_from_state_dict``) ran; a tensor found under another
    key than the one it came with was renamed.
    """

    def __init__(self, model: nn.Module, state_dict: Mapping[str, Any]) -> None:
        self.model = model
        self.origin = {id(v): k for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
        self.renames: dict[str, str] = {}
        self.handles: list[Any] = []
        self.result: list[tuple[str, str]] = []

    def _hook(self, module: nn.Module, state_dict: Mapping[str, Any], prefix: str, *args) -> None:
        for key, value in state_dict.items():
            old = self.origin.get(id(value))
            if old is not None and old != key:
                self.renames[old] = key

    def __enter__(self) -> list[tuple[str, str]]:
        if any(m._load_state_dict_pre_hooks or _overrides_load(m) for m in self.model.modules()):
            for module in self.model.modules():
                self.handles.append(module.register_load_state_dict_pre_hook(self._hook))
        return self.result

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.result += sorted(self.renames.items())


def _overrides_load(module: nn.Module) -> bool:
    return type(module)._load_from_state_dict is not nn.Module._load_from_state_dict


def load_pretrained(
    module: nn.Module, checkpoint: str, prefix: str | None = None, map_location: str = "cpu"
) -> LoadReport:
    """Load weights into ``module`` for ``init_cfg=dict(type='Pretrained', ...)``.

    With ``prefix='backbone.'`` only keys starting with it are used, prefix stripped.
    The key table is logged; missing weights are a warning here (fine-tuning loads
    partial weights on purpose), not an error.
    """
    ckpt = load_checkpoint_file(checkpoint, map_location=map_location)
    renamed: list[tuple[str, str]] = []
    state = revise_keys(extract_state_dict(ckpt), DDP_PREFIX, renamed)
    if prefix:
        prefix = prefix if prefix.endswith(".") else prefix + "."
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f"no key in {checkpoint} starts with prefix {prefix!r}")
    report = load_state_dict(module, state, source=str(checkpoint))
    report.remapped[:0] = renamed
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
