"""``custom_imports``: modules a config asks to import so that their registrations happen.

``custom_imports = dict(imports=['my_pkg.my_module'], allow_failed_imports=False)``
imports each module by name (as MMEngine's ``import_modules_from_strings``); a module
that fails to import is an error naming it, or only a warning with
``allow_failed_imports=True``.

Modules of the OpenMMLab packages whose configs vistra reads (``mmpretrain``, ``mmcls``,
``mmseg``, ``mmselfsup``, ``mmdet`` and their submodules, e.g. ``mmpretrain.models`` as
MMSegmentation's ConvNeXt configs ask for) are satisfied without importing anything:
upstream configs import them only to register types, and vistra's own registry already
holds what vistra provides of them (a type it lacks is reported when the model is built).
vistra never imports those packages, even where they are installed.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from collections.abc import Mapping
from typing import Any

from vistra.config.errors import CustomImportError, did_you_mean

_VALID_KEYS = ("imports", "allow_failed_imports")
# Top-level packages whose modules vistra stands in for (see the module docstring).
PROVIDED_PACKAGES = ("mmpretrain", "mmcls", "mmseg", "mmselfsup", "mmdet")


def is_provided(name: str) -> bool:
    """Whether module ``name`` belongs to a package vistra stands in for (no import needed)."""
    return name.split(".", 1)[0] in PROVIDED_PACKAGES


def import_custom_modules(cfg: Mapping[str, Any]) -> list[types.ModuleType]:
    """Import the modules named by ``cfg['custom_imports']``; returns those imported.

    ``cfg`` is a Config or a dict; without a ``custom_imports`` key nothing happens. Names
    of :data:`PROVIDED_PACKAGES` count as imported and are not returned.
    """
    spec = cfg.get("custom_imports") if "custom_imports" in cfg else None
    if not spec:
        return []
    if not isinstance(spec, Mapping):
        raise CustomImportError(
            f"custom_imports must be dict(imports=[...], allow_failed_imports=False), got {spec!r}"
        )
    for key in spec:
        if key not in _VALID_KEYS:
            raise CustomImportError(
                f"custom_imports has an unknown key {key!r}; valid keys: "
                f"{', '.join(_VALID_KEYS)}.{did_you_mean(str(key), _VALID_KEYS)}"
            )
    names = spec.get("imports", [])
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise CustomImportError(
            f"custom_imports.imports must be a module name or a list of them, got {names!r}"
        )
    allow_failed = bool(spec.get("allow_failed_imports", False))
    modules = []
    for name in names:
        if is_provided(name):
            continue
        module = _import_one(name, allow_failed)
        if module is not None:
            modules.append(module)
    return modules


def _import_one(name: str, allow_failed: bool) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if allow_failed:
            warnings.warn(
                f"custom_imports: {name} failed to import and is ignored ({e})",
                UserWarning,
                stacklevel=3,
            )
            return None
        path = "; ".join(p or "." for p in sys.path)
        raise CustomImportError(
            f"custom_imports: cannot import {name!r}: {e}. Make sure the directory that "
            f"contains it is on PYTHONPATH (sys.path is: {path}), or set "
            "allow_failed_imports=True to go on without it"
        ) from e
