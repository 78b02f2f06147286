"""Bases named with a package scope: ``_base_ = 'mmcls::_base_/default_runtime.py'``.

MMEngine reads ``scope::path`` as ``path`` inside the config tree that the package of that
scope ships (``<package>/.mim/configs/<path>``), and marks what that base defines with the
scope: each outermost dict with a ``type`` key (in any value, lists and tuples included)
gets ``_scope_='<scope>'`` unless it has one. vistra does the same, looking for the file in
these places, first hit wins:

1. ``VISTRA_CONFIG_ROOTS`` (entries separated by ``os.pathsep``): an entry ``scope=DIR``
   names the config tree of one scope (``mmcls=/src/mmcls/configs``); an entry ``DIR``
   without ``=`` is a folder holding installed packages (a site-packages folder, or the
   oracle's folder) searched for ``<package>/.mim/configs``;
2. the installed package (found on ``sys.path`` with ``importlib.util.find_spec``, which
   does not run it), ``<package>/.mim/configs``. ``mmcls::`` looks in mmcls, then in
   mmpretrain (its later name, whose tree holds the same bases);
3. for the scopes vistra stands in for (``mmpretrain``, ``mmcls``, ``mmseg``,
   ``mmselfsup``, ``mmdet``), vistra's own ``configs/`` tree: ``configs/<scope>/<path>``
   where vistra's merged tree names that file differently (MMSegmentation's
   ``_base_/default_runtime.py``), then ``configs/<path>``.

A base found nowhere is an error that lists every place tried. Nothing here imports the
packages.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from vistra.config.config_dict import ConfigDict
from vistra.config.errors import ConfigError

SCOPE_SEPARATOR = "::"
ROOTS_ENV = "VISTRA_CONFIG_ROOTS"
SCOPE_KEY = "_scope_"
# scope -> the modules whose shipped configs hold its bases, in the order tried
SCOPE_PACKAGES = {
    "mmpretrain": ("mmpretrain",),
    "mmcls": ("mmcls", "mmpretrain"),
    "mmseg": ("mmseg",),
    "mmselfsup": ("mmselfsup",),
    "mmdet": ("mmdet",),
}
VISTRA_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def is_scoped(base: str) -> bool:
    """Whether a ``_base_`` entry names a package scope (``'mmcls::path'``)."""
    return SCOPE_SEPARATOR in base


def resolve_scoped_base(base: str, requested_by: str) -> tuple[str, str]:
    """``(path, scope)`` of a ``scope::relative/path.py`` base asked for by ``requested_by``."""
    scope, _, relative = base.partition(SCOPE_SEPARATOR)
    if not scope.isidentifier() or not relative or SCOPE_SEPARATOR in relative:
        raise ConfigError(
            f"{requested_by}: base {base!r} is not of the form 'package::relative/path.py' "
            "(e.g. 'mmcls::_base_/default_runtime.py')"
        )
    tried = []
    for root in _candidate_roots(scope):
        path = os.path.normpath(os.path.join(root, relative))
        if os.path.isfile(path):
            return path, scope
        tried.append(path)
    where = "; ".join(tried) if tried else "nowhere (no config tree is known for it)"
    raise ConfigError(
        f"base config {base!r} (asked for by {requested_by}) not found: tried {where}. "
        f"Install the package of scope {scope!r}, or name its config tree in "
        f"{ROOTS_ENV}={scope}=/path/to/configs"
    )


def _candidate_roots(scope: str) -> list[str]:
    modules = SCOPE_PACKAGES.get(scope, (scope,))
    roots: list[str] = []
    for entry in filter(None, os.environ.get(ROOTS_ENV, "").split(os.pathsep)):
        name, sep, folder = entry.partition("=")
        if sep:
            if name == scope:
                roots.append(os.path.expanduser(folder))
        else:
            roots += [
                os.path.join(os.path.expanduser(entry), m, ".mim", "configs") for m in modules
            ]
    for module in modules:
        folder = _installed_package_dir(module)
        if folder is not None:
            roots.append(os.path.join(folder, ".mim", "configs"))
    if scope in SCOPE_PACKAGES:
        roots += [str(VISTRA_CONFIGS / scope), str(VISTRA_CONFIGS)]
    return list(dict.fromkeys(roots))


def _installed_package_dir(module: str) -> str | None:
    """The folder of top-level package ``module`` on sys.path, without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return locations[0] if locations else None


def mark_scope(value: Any, scope: str, has_scope: bool = True) -> Any:
    """``value`` (a base's merged config) with ``_scope_`` set as MMEngine's
    ``Config._dict_to_config_dict`` sets it: on the outermost dicts that have ``type``."""
    if isinstance(value, dict):
        marked = ConfigDict(value)
        if has_scope and "type" in marked:
            has_scope = False
            if marked.get(SCOPE_KEY) is None:
                marked[SCOPE_KEY] = scope
        for key, item in marked.items():
            dict.__setitem__(marked, key, mark_scope(item, scope, has_scope))
        return marked
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        return type(value)(mark_scope(item, scope, has_scope) for item in value)
    return value
