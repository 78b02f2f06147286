"""The recursive merge of a child config onto its base, and of ``--cfg-options`` onto a config.

Rules (MMEngine's ``Config._merge_a_into_b``):

- a dict in the child is merged key by key into the base dict of the same name;
- any other child value (lists included) replaces the base value;
- ``_delete_=True`` in a child dict drops the base dict first;
- a child dict over a base value that is not a dict is an error (``_delete_=True`` allows it);
- with ``allow_list_keys`` (``--cfg-options``), digit keys index an existing list:
  ``pipeline.1.scale=...`` edits the second pipeline step.

Unlike MMEngine, ``_delete_`` never survives into the result, even where there was
nothing to delete, and the inputs are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vistra.config.config_dict import ConfigDict
from vistra.config.errors import ConfigError

DELETE_KEY = "_delete_"


def strip_delete(value: Any) -> Any:
    """``value`` with every ``_delete_`` key removed, dicts converted to ConfigDict."""
    if isinstance(value, dict):
        return ConfigDict({k: strip_delete(v) for k, v in value.items() if k != DELETE_KEY})
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        return type(value)(strip_delete(v) for v in value)
    return value


@dataclass(frozen=True)
class _Merge:
    allow_list_keys: bool
    where: str  # where the child comes from, for messages: " in /a/child.py"
    into: str  # what the base is, for messages: "its base config"


def merge_into(
    child: dict,
    base: dict | list,
    allow_list_keys: bool = False,
    where: str = " in the child config",
    into: str = "its base config",
) -> Any:
    """``base`` updated with ``child`` by the rules above; neither input is modified.

    ``where`` and ``into`` name the two sides in error messages.
    """
    return _merge(child, base, _Merge(allow_list_keys, where, into), path="")


def _merge(child: dict, base: dict | list, how: _Merge, path: str) -> Any:
    result: Any = list(base) if isinstance(base, list) else ConfigDict(base)
    for key, value in child.items():
        if key == DELETE_KEY:
            continue
        full = f"{path}.{key}" if path else str(key)
        if isinstance(result, list):
            _merge_list_item(result, key, value, how, full)
        elif isinstance(value, dict):
            result[key] = _merge_dict_value(result, key, value, how, full)
        else:
            result[key] = strip_delete(value)
    return result


def _merge_dict_value(result: dict, key: Any, value: dict, how: _Merge, full: str) -> Any:
    if key not in result or value.get(DELETE_KEY, False):
        return strip_delete(value)
    current = result[key]
    allowed: tuple[type, ...] = (dict, list) if how.allow_list_keys else (dict,)
    if not isinstance(current, allowed):
        raise ConfigError(
            f"'{full}' is a dict{how.where} but {current!r} (a {type(current).__name__}) in "
            f"{how.into}, so the two cannot be merged; add {DELETE_KEY}=True to the dict to "
            "replace that value"
        )
    return _merge(value, current, how, full)


def _merge_list_item(result: list, key: Any, value: Any, how: _Merge, full: str) -> None:
    parent = full.rpartition(".")[0]
    if not (how.allow_list_keys and isinstance(key, str) and key.isdigit()):
        raise ConfigError(
            f"'{full}'{how.where}: '{parent}' is a list, so its items are set by index "
            f"(e.g. '{parent}.0'), not by key '{key}'"
        )
    index = int(key)
    if index >= len(result):
        raise ConfigError(
            f"'{full}'{how.where}: index {index} is out of range for a list of length {len(result)}"
        )
    current = result[index]
    if isinstance(value, dict) and isinstance(current, dict | list) and not value.get(DELETE_KEY):
        result[index] = _merge(value, current, how, full)
    else:
        result[index] = strip_delete(value)


def unflatten(options: dict[str, Any]) -> ConfigDict:
    """``{'a.b.c': 1}`` -> ``{'a': {'b': {'c': 1}}}``; keys sharing a prefix share a dict."""
    nested = ConfigDict()
    for full_key, value in options.items():
        if not isinstance(full_key, str) or not full_key or "" in full_key.split("."):
            raise ConfigError(
                f"invalid option key {full_key!r}: expected dotted names like 'model.backbone.depth'"
            )
        node = nested
        *parents, last = full_key.split(".")
        for i, part in enumerate(parents):
            child = node.setdefault(part, ConfigDict())
            if not isinstance(child, dict):
                prefix = ".".join(parents[: i + 1])
                raise ConfigError(
                    f"option '{full_key}' conflicts with option '{prefix}' set to {child!r}"
                )
            node = child
        node[last] = value
    return nested
