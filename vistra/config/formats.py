"""Reading and writing the JSON and YAML forms of a config.

YAML keeps tuples: they are written with the ``!!python/tuple`` tag and read back as
tuples by a safe loader that knows only that one extra tag (no arbitrary objects).
PyYAML is imported only when a YAML file is read or written.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from vistra.config.errors import ConfigError

_TUPLE_TAG = "tag:yaml.org,2002:python/tuple"


def parse_json(text: str, filename: str) -> dict:
    """The JSON object in ``text``; errors name the file, line and column."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{filename}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    return _require_mapping(data, filename)


def parse_yaml(text: str, filename: str) -> dict:
    """The YAML mapping in ``text`` (empty file -> ``{}``); errors name the file and line."""
    import yaml

    try:
        data = yaml.load(text, Loader=_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    return _require_mapping({} if data is None else data, filename)


def _require_mapping(data: Any, filename: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{filename}: a config must be a mapping of names to values at the top level, "
            f"got a {type(data).__name__}"
        )
    return data


def dump_json(data: dict) -> str:
    """``data`` as indented JSON (tuples become lists; classes become dotted names)."""
    return json.dumps(data, indent=4, ensure_ascii=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    name = dotted_name(value)
    if name is None:
        raise ConfigError(f"cannot write a {type(value).__name__} ({value!r}) as JSON")
    return name


def dotted_name(value: Any) -> str | None:
    """``'package.module.Name'`` for a class or function, else ``None``."""
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return None


def dump_yaml(data: dict) -> str:
    """``data`` as block-style YAML, key order kept, tuples tagged so they load back as tuples."""
    import yaml

    return yaml.dump(
        data, Dumper=_dumper(), sort_keys=False, allow_unicode=True, default_flow_style=False
    )


@cache
def _loader() -> type:
    import yaml

    class TupleSafeLoader(yaml.SafeLoader):
        pass

    TupleSafeLoader.add_constructor(
        _TUPLE_TAG, lambda loader, node: tuple(loader.construct_sequence(node, deep=True))
    )
    return TupleSafeLoader


@cache
def _dumper() -> type:
    import yaml

    class TupleSafeDumper(yaml.SafeDumper):
        pass

    TupleSafeDumper.add_representer(
        tuple, lambda dumper, data: dumper.represent_sequence(_TUPLE_TAG, data)
    )

    def represent_other(dumper: yaml.SafeDumper, data: Any) -> Any:
        name = dotted_name(data)
        if name is None:
            raise ConfigError(f"cannot write a {type(data).__name__} ({data!r}) as YAML")
        return dumper.represent_str(name)

    TupleSafeDumper.add_multi_representer(object, represent_other)
    return TupleSafeDumper
