"""Writing a config as readable Python that loads back to the same values.

The layout follows what MMEngine prints (``key = dict(a=1, b=dict(...))``): one top-level
assignment per key; dicts whose keys are all identifiers use ``dict(k=v)``, others use
``{'k': v}``; a value that does not fit on its line is broken one item per line.
Tuples stay tuples. A class or function value (possible in Python configs) is written as
its dotted name, a string.
"""

from __future__ import annotations

import keyword
import math
from typing import Any

from vistra.config.errors import ConfigError
from vistra.config.formats import dotted_name

LINE_WIDTH = 79
INDENT = 4


def is_identifier(key: Any) -> bool:
    """Whether ``key`` can be written as ``key=value`` in ``dict(...)`` or as a variable."""
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)


def format_config(cfg: dict) -> str:
    """Python source that defines one variable per top-level key of ``cfg``."""
    lines = []
    for key, value in cfg.items():
        if is_identifier(key):
            target = key
        else:
            # Not a valid variable name (possible in JSON/YAML configs): still loadable.
            target = f"globals()[{key!r}]"
        head = f"{target} = "
        lines.append(head + _format(value, 0, len(head), path=str(key)))
    return "\n".join(lines) + "\n" if lines else ""


def _format(value: Any, indent: int, used: int, path: str) -> str:
    # ``used``: characters already on the current line before this value.
    flat = _inline(value, path)
    if used + len(flat) + 1 <= LINE_WIDTH or not _is_container(value) or not value:
        return flat
    inner = " " * (indent + INDENT)
    items = []
    if isinstance(value, dict):
        as_call = all(is_identifier(k) for k in value)
        open_, close = ("dict(", ")") if as_call else ("{", "}")
        for k, v in value.items():
            head = f"{k}=" if as_call else f"{_scalar(k, path)}: "
            text = _format(v, indent + INDENT, len(inner) + len(head), f"{path}.{k}")
            items.append(f"{inner}{head}{text},")
    else:
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        if not any(_is_container(v) for v in value):  # numbers, strings: fill each line
            items = _pack([f"{_inline(v, path)}," for v in value], inner)
        else:
            for i, v in enumerate(value):
                text = _format(v, indent + INDENT, len(inner), f"{path}.{i}")
                items.append(f"{inner}{text},")
    return open_ + "\n" + "\n".join(items) + "\n" + " " * indent + close


def _pack(words: list[str], inner: str) -> list[str]:
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= LINE_WIDTH:
            lines[-1] += " " + word
        else:
            lines.append(inner + word)
    return lines


def _is_container(value: Any) -> bool:
    return isinstance(value, dict) or type(value) in (list, tuple)


def _inline(value: Any, path: str) -> str:
    if isinstance(value, dict):
        if all(is_identifier(k) for k in value):
            body = ", ".join(f"{k}={_inline(v, f'{path}.{k}')}" for k, v in value.items())
            return f"dict({body})"
        body = ", ".join(
            f"{_scalar(k, path)}: {_inline(v, f'{path}.{k}')}" for k, v in value.items()
        )
        return "{" + body + "}"
    if type(value) is list:
        return "[" + ", ".join(_inline(v, f"{path}.{i}") for i, v in enumerate(value)) + "]"
    if type(value) is tuple:
        items = [_inline(v, f"{path}.{i}") for i, v in enumerate(value)]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return _scalar(value, path)


def _scalar(value: Any, path: str) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    for plain in (
        int,
        str,
        bytes,
        complex,
    ):  # subclasses (enums, ...) are written as the plain type
        if isinstance(value, plain):
            return repr(plain(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "float('nan')"
        if math.isinf(value):
            return "float('inf')" if value > 0 else "float('-inf')"
        return repr(float(value))
    name = dotted_name(value)
    if name is not None:
        return repr(name)
    raise ConfigError(
        f"cannot write config key '{path}' as Python: a {type(value).__name__} ({value!r}) "
        "has no literal form"
    )
