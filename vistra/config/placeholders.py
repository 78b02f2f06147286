"""The ``{{ ... }}`` placeholders a config file may contain, substituted in its text before parsing.

Three kinds, applied in this order (as MMEngine does):

1. predefined variables: ``{{ fileDirname }}``, ``{{ fileBasename }}``,
   ``{{ fileBasenameNoExtension }}``, ``{{ fileExtname }}`` -> the file's own path parts;
2. environment variables: ``{{$NAME:default}}`` or ``{{'$NAME:default'}}`` -> the raw text of
   ``$NAME`` (or ``default`` when unset). Both forms drop the braces and the quotes, so
   ``epochs = {{'$EPOCHS:12'}}`` is the int 12; write ``'{{$ROOT:data}}/train'`` for a string.
   A placeholder without ``:default`` requires the variable;
3. base references: ``{{_base_.model.backbone}}`` -> the value of that key in the merged base
   configs. As a whole value it becomes that value (of any type); inside a string it is
   replaced by the value's text.

Base references are only marked here (replaced by unique tokens); :func:`fill_base_refs`
puts the values in once the file is parsed and its bases are loaded.
"""

from __future__ import annotations

import copy
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any

from vistra.config.errors import ConfigError, did_you_mean

PREDEFINED = ("fileDirname", "fileBasename", "fileBasenameNoExtension", "fileExtname")

_PREDEFINED_RE = re.compile(r"\{\{\s*(" + "|".join(PREDEFINED) + r")\s*\}\}")
_ENV_RE = re.compile(r"\{\{['\"]?\s*\$(\w+)\s*(?::\s*(\S*?))?\s*['\"]?\}\}")
_BASE_RE = re.compile(r"\{\{\s*_base_\.([\w.]+)\s*\}\}")
_LEFTOVER_FILE_RE = re.compile(r"\{\{\s*(file\w*)\s*\}\}")
_LEFTOVER_ENV_RE = re.compile(r"\{\{['\"]?\s*\$[^}]*\}\}")
_LEFTOVER_BASE_RE = re.compile(r"\{\{\s*_base_\b[^}]*\}\}")


def line_of(text: str, pos: int) -> int:
    """1-based line number of character ``pos``."""
    return text.count("\n", 0, pos) + 1


def in_comment(text: str, pos: int) -> bool:
    """Whether ``pos`` follows a ``#`` on its line (a Python or YAML comment).

    A placeholder there is still substituted when it can be, but never reported as broken.
    """
    return "#" in text[text.rfind("\n", 0, pos) + 1 : pos]


def _first_outside_comments(pattern: re.Pattern, text: str) -> re.Match | None:
    return next((m for m in pattern.finditer(text) if not in_comment(text, m.start())), None)


def substitute_predefined(text: str, filename: str) -> str:
    """Replace the four ``{{ file... }}`` variables with parts of ``filename`` (absolute)."""
    basename = os.path.basename(filename)
    values = {
        "fileDirname": os.path.dirname(filename),
        "fileBasename": basename,
        "fileBasenameNoExtension": os.path.splitext(basename)[0],
        "fileExtname": os.path.splitext(filename)[1],
    }
    values = {k: v.replace("\\", "/") for k, v in values.items()}
    text = _PREDEFINED_RE.sub(lambda m: values[m.group(1)], text)
    match = _first_outside_comments(_LEFTOVER_FILE_RE, text)
    if match:
        raise ConfigError(
            f"{filename}:{line_of(text, match.start())}: unknown placeholder "
            f"{match.group(0)!r}; predefined variables are {', '.join(PREDEFINED)}."
            f"{did_you_mean(match.group(1), PREDEFINED)}"
        )
    return text


def substitute_env(text: str, filename: str) -> tuple[str, dict[str, str]]:
    """Replace ``{{$NAME:default}}`` placeholders; also returns the variables read from the env."""
    used: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:  # a set variable wins over the default, even when empty (MMEngine)
            value = os.environ[name]
            used[name] = value
        else:
            value = default or ""
        if value:
            return value
        if in_comment(text, match.start()):
            return match.group(0)
        state = "is set but empty" if name in os.environ else "is not set"
        raise ConfigError(
            f"{filename}:{line_of(text, match.start())}: placeholder {match.group(0)!r}: "
            f"environment variable {name} {state} and there is no default to use; "
            f"set {name} or write {{{{${name}:default}}}}"
        )

    text = _ENV_RE.sub(replace, text)
    match = _first_outside_comments(_LEFTOVER_ENV_RE, text)
    if match:
        raise ConfigError(
            f"{filename}:{line_of(text, match.start())}: malformed environment placeholder "
            f"{match.group(0)!r}; expected {{{{$NAME}}}} or {{{{$NAME:default}}}} "
            "(NAME of letters, digits and '_'; no spaces in the default)"
        )
    return text, used


@dataclass(frozen=True)
class BaseRef:
    """One ``{{_base_.key.path}}`` placeholder, replaced in the text by ``token``."""

    token: str
    key_path: str
    text: str
    line: int


def mark_base_refs(text: str, filename: str, quote_outside_json_strings: bool) -> tuple[str, dict]:
    """Replace each ``{{_base_.x}}`` by a unique identifier-like token; returns ``token -> BaseRef``.

    Tokens are bare names, which Python code and YAML accept anywhere. JSON needs quotes
    around a token that stands for a whole value, hence ``quote_outside_json_strings``.
    """
    refs: dict[str, BaseRef] = {}
    by_path: dict[str, str] = {}
    salt = uuid.uuid4().hex[:8]
    mask = _json_string_mask(text) if quote_outside_json_strings else None

    def replace(match: re.Match) -> str:
        key_path = match.group(1)
        token = by_path.get(key_path)
        if token is None:
            token = f"__vistra_base_{salt}_{len(by_path)}__"
            by_path[key_path] = token
            line = line_of(text, match.start())
            refs[token] = BaseRef(token, key_path, match.group(0), line)
        if mask is not None and not mask[match.start()]:
            return f'"{token}"'
        return token

    new_text = _BASE_RE.sub(replace, text)
    match = _first_outside_comments(_LEFTOVER_BASE_RE, new_text)
    if match:
        raise ConfigError(
            f"{filename}:{line_of(new_text, match.start())}: malformed base reference "
            f"{match.group(0)!r}; expected {{{{_base_.key}}}} or {{{{_base_.key.subkey}}}}"
        )
    return new_text, refs


def _json_string_mask(text: str) -> bytearray:
    # 1 where a character lies inside a JSON string literal (quotes included).
    mask = bytearray(len(text))
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            mask[i] = 1
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            mask[i] = 1
    return mask


def resolve_base_ref(ref: BaseRef, base: dict, filename: str) -> Any:
    """The value ``ref`` points at in the merged base config (a deep copy)."""
    node: Any = base
    walked: list[str] = []
    for part in ref.key_path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            where = "the base configs have" if not walked else f"'_base_.{'.'.join(walked)}' has"
            hint = did_you_mean(part, list(node)) if isinstance(node, dict) else ""
            raise ConfigError(
                f"{filename}:{ref.line}: placeholder {ref.text!r} does not resolve: "
                f"{where} no key {part!r}.{hint}"
            )
        walked.append(part)
    return copy.deepcopy(node)


def fill_base_refs(value: Any, refs: dict, base: dict, filename: str, whole: bool) -> Any:
    """Put base values where the tokens of ``refs`` ended up in a parsed config.

    With ``whole``, a string that is exactly a token becomes the referenced value; any other
    string containing tokens gets the values' text in their place.
    """
    if not refs:
        return value
    pattern = re.compile("|".join(re.escape(t) for t in refs))

    def fill(v: Any) -> Any:
        if isinstance(v, str):
            if whole and v in refs:
                return resolve_base_ref(refs[v], base, filename)
            if pattern.search(v):
                return pattern.sub(lambda m: _as_text(refs[m.group(0)], base, filename), v)
            return v
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        if isinstance(v, list | tuple) and type(v) in (list, tuple):
            return type(v)(fill(x) for x in v)
        return v

    return fill(value)


def _as_text(ref: BaseRef, base: dict, filename: str) -> str:
    value = resolve_base_ref(ref, base, filename)
    if isinstance(value, dict | list | tuple | set):
        raise ConfigError(
            f"{filename}:{ref.line}: placeholder {ref.text!r} inside a string refers to a "
            f"{type(value).__name__}; only a string or number can be written into a string"
        )
    return str(value)
