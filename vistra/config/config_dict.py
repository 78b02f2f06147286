"""ConfigDict: the nested dict a config is made of, readable as attributes.

It behaves like MMEngine's ``ConfigDict`` (an ``addict.Dict`` that does not create
missing keys): ``cfg.model.backbone.depth`` reads, ``cfg.model.backbone.depth = 101``
writes, and plain dicts stored into it (also inside lists and tuples) become
ConfigDicts, so attribute access works at every depth. A missing attribute is an
``AttributeError`` that names the key and suggests the closest existing ones.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

from vistra.config.errors import did_you_mean


def _hook(value: Any) -> Any:
    # Only plain dicts are converted: user-defined dict subclasses are left alone (as MMEngine).
    if type(value) in (dict, OrderedDict):
        return ConfigDict(value)
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        return type(value)(_hook(v) for v in value)
    return value


def to_plain(value: Any) -> Any:
    """``value`` with every dict (ConfigDict included) turned into a plain ``dict``, recursively.

    Lists stay lists and tuples stay tuples.
    """
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in dict.items(value)}
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        return type(value)(to_plain(v) for v in value)
    return value


class ConfigDict(dict):
    """A dict whose keys are also attributes; nested plain dicts are converted on the way in."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    # ------------------------------------------------------------------ item and attribute access
    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, _hook(value))

    def __missing__(self, key: Any) -> Any:
        raise KeyError(key)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.startswith("__") and name.endswith("__"):
                # copy, pickle and friends probe for dunders: answer quickly, no hint.
                raise AttributeError(name) from None
            hint = did_you_mean(name, [k for k in self if isinstance(k, str)])
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}' "
                f"(no such key; keys: {_key_list(self)}).{hint}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}'"
            ) from None

    # ------------------------------------------------------------------ dict API with conversion
    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Update recursively: a dict value updates an existing dict value instead of replacing it.

        This is MMEngine's (addict's) ``ConfigDict.update``; it knows nothing of ``_delete_``.
        """
        for key, value in dict(*args, **kwargs).items():
            current = self.get(key)
            if isinstance(current, ConfigDict) and isinstance(value, dict):
                current.update(value)
            else:
                self[key] = value

    def copy(self) -> ConfigDict:
        """A shallow copy that is still a ConfigDict."""
        return type(self)(dict.items(self))

    __copy__ = copy

    def __deepcopy__(self, memo: dict) -> ConfigDict:
        other = type(self)()
        memo[id(self)] = other
        for key, value in dict.items(self):
            dict.__setitem__(other, copy.deepcopy(key, memo), copy.deepcopy(value, memo))
        return other

    def __reduce__(self) -> tuple:
        return (type(self), (to_plain(self),))

    def to_dict(self) -> dict:
        """A plain ``dict`` copy, nested dicts included (lists and tuples keep their type)."""
        return to_plain(self)


def _key_list(d: dict, limit: int = 12) -> str:
    keys = [repr(k) for k in d]
    if not keys:
        return "none"
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
