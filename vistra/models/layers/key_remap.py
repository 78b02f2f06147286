"""Checkpoint keys that a model renames from another package's layout, and the protocol.

Some modules accept checkpoints in another key layout (MMSegmentation's ``ResNetV1c``
stem is ``stem.0.weight``, MMPretrain's ``stem.0.conv.weight``). Such a module defines

    ``remap_state_dict(state_dict, prefix) -> list[(old_key, new_key)]``

which renames the keys of its own part of ``state_dict`` in place (full key names, with
``prefix``) and returns every rename; keys already in its layout are left alone, so a
second call finds nothing to do. Two ways in:

- a loader calls :func:`remap_state_dict` on the whole model *before* it compares keys
  and shapes (needed where a key exists in both layouts with different shapes, e.g. a
  ``downsample.1.weight`` that is a conv in one and a norm in the other), and lists the
  returned pairs in its report's "remapped" row. The loader needs no import for this:
  calling ``module.remap_state_dict(state_dict, name + '.')`` for every
  ``model.named_modules()`` that has it is the whole protocol;
- a plain ``model.load_state_dict(...)`` runs the same renames from a load pre-hook
  (:func:`install_remap_hook`), where the renamed tensors keep their identity.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from torch import nn

Renames = list[tuple[str, str]]


def remap_state_dict(model: nn.Module, state_dict: MutableMapping[str, Any]) -> Renames:
    """Rename, in place, the keys of ``state_dict`` (the whole model's) that a submodule
    of ``model`` accepts in another layout; return ``[(old, new), ...]``."""
    renamed: Renames = []
    for name, module in model.named_modules():
        remap = getattr(module, "remap_state_dict", None)
        if callable(remap):
            renamed += remap(state_dict, f"{name}." if name else "")
    return renamed


def install_remap_hook(module: nn.Module) -> None:
    """Run ``module.remap_state_dict`` whenever a state dict is loaded into it."""
    module.register_load_state_dict_pre_hook(_pre_hook)


def _pre_hook(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    module.remap_state_dict(state_dict, prefix)


def rename_prefix(
    state_dict: MutableMapping[str, Any], old: str, new: str, renamed: Renames
) -> None:
    """Move every key starting with ``old`` to start with ``new`` (noting each move)."""
    for key in [k for k in state_dict if k.startswith(old)]:
        target = new + key[len(old) :]
        state_dict[target] = state_dict.pop(key)
        renamed.append((key, target))
