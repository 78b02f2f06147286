"""Config: a loaded config file, read like a dict or like attributes, merged, dumped.

Same interface and semantics as MMEngine's ``Config`` (``fromfile``, ``fromstring``,
``merge_from_dict``, ``dump``, ``pretty_text``, ``filename``, ``text``, attribute and item
access); ``vistra.config.loading`` holds the file rules and ``vistra.config.merge`` the
merge rules.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vistra.config.config_dict import ConfigDict, to_plain
from vistra.config.custom_imports import import_custom_modules as _import_custom_modules
from vistra.config.errors import ConfigError, did_you_mean
from vistra.config.formats import dump_json, dump_yaml
from vistra.config.loading import SUPPORTED_EXTENSIONS, load_config_file
from vistra.config.merge import merge_into, unflatten
from vistra.config.pretty import format_config

RESERVED_KEYS = ("filename", "text", "pretty_text", "env_variables", "legacy_notes")
_INTERNAL = ("_cfg_dict", "_filename", "_text", "_env_variables", "_legacy_notes")


class Config:
    """A config: a tree of ConfigDicts plus the file it came from.

    ``cfg.model.backbone.depth``, ``cfg['model']``, ``cfg.model.backbone.depth = 101``,
    ``'model' in cfg``, ``len(cfg)``, iteration over keys and ``cfg.get``/``keys``/
    ``items``/``values``/``pop``/``update`` all work as on a dict.
    """

    _pretty_cache: tuple[str, str] | None = None  # (repr of the values, pretty_text)

    def __init__(
        self,
        cfg_dict: dict | None = None,
        cfg_text: str | None = None,
        filename: str | Path | None = None,
        env_variables: dict[str, str] | None = None,
        legacy_notes: tuple[str, ...] = (),
    ) -> None:
        filename = str(filename) if isinstance(filename, Path) else filename
        if cfg_dict is None:
            cfg_dict = {}
        elif not isinstance(cfg_dict, dict):
            raise TypeError(f"cfg_dict must be a dict, got {type(cfg_dict).__name__}")
        for key in cfg_dict:
            if key in RESERVED_KEYS:
                raise ConfigError(f"{key!r} is a reserved name and cannot be a config key")
        if cfg_text:
            text = cfg_text
        elif filename and os.path.isfile(filename):
            with open(filename, encoding="utf-8") as f:
                text = f.read()
        else:
            text = ""
        cfg = cfg_dict if isinstance(cfg_dict, ConfigDict) else ConfigDict(cfg_dict)
        object.__setattr__(self, "_cfg_dict", cfg)
        object.__setattr__(self, "_filename", filename)
        object.__setattr__(self, "_text", text)
        object.__setattr__(self, "_env_variables", dict(env_variables or {}))
        object.__setattr__(self, "_legacy_notes", tuple(legacy_notes))

    # ------------------------------------------------------------------ construction
    @staticmethod
    def fromfile(
        filename: str | Path,
        use_predefined_variables: bool = True,
        import_custom_modules: bool = True,
        use_environment_variables: bool = True,
    ) -> Config:
        """Load a ``.py``/``.json``/``.yaml``/``.yml`` config with its ``_base_`` chain.

        When the config has ``custom_imports`` (and ``import_custom_modules``), the modules it
        names are imported so that their registrations happen.
        """
        filename = str(filename)
        loaded = load_config_file(filename, use_predefined_variables, use_environment_variables)
        if import_custom_modules and loaded.cfg.get("custom_imports"):
            _import_custom_modules(loaded.cfg)
        return Config(
            loaded.cfg,
            cfg_text=loaded.text,
            filename=filename,
            env_variables=loaded.env_variables,
        )

    @staticmethod
    def fromstring(cfg_str: str, file_format: str) -> Config:
        """A config from text in one of the file formats (``'.py'``, ``'.json'``, ``'.yaml'``)."""
        if file_format not in SUPPORTED_EXTENSIONS:
            raise ConfigError(
                f"unsupported file_format {file_format!r}; supported: "
                f"{', '.join(SUPPORTED_EXTENSIONS)}"
            )
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "config" + file_format)
            with open(path, "w", encoding="utf-8") as f:
                f.write(cfg_str)
            return Config.fromfile(path)

    # ------------------------------------------------------------------ properties
    @property
    def filename(self) -> str | None:
        """The path the config was loaded from, as given (``None`` for an in-memory config)."""
        return self._filename

    @property
    def text(self) -> str:
        """The raw text of every file that was read, bases first, each after its path."""
        return self._text

    @property
    def env_variables(self) -> dict[str, str]:
        """The environment variables that ``{{$NAME:default}}`` placeholders took values from."""
        return self._env_variables

    @property
    def legacy_notes(self) -> tuple[str, ...]:
        """For a config translated from the 0.x schema (``vistra.config.legacy``): a summary
        line, then one line per change; empty otherwise."""
        return self._legacy_notes

    @property
    def pretty_text(self) -> str:
        """The merged config as Python source that loads back to the same values."""
        plain = self.to_dict()
        # A run asks for it several times (log, dump, visualiser backends: ~3 ms each on
        # the quickstart). The text is kept with the repr of the values it was made from,
        # which changes with any value, type or container kind, so a config changed since
        # (in place, nested or not) is formatted again.
        key = repr(plain)
        cached = self._pretty_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        text = format_config(plain)
        object.__setattr__(self, "_pretty_cache", (key, text))
        return text

    # ------------------------------------------------------------------ dict-like access
    def __getattr__(self, name: str) -> Any:
        if name in _INTERNAL or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)  # not set yet (unpickling) or a protocol probe
        cfg = self._cfg_dict
        try:
            return getattr(cfg, name)
        except AttributeError:
            keys = [k for k in cfg if isinstance(k, str)]
            raise AttributeError(
                f"'Config' object has no attribute '{name}' (no such key).{did_you_mean(name, keys)}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        delattr(self._cfg_dict, name)

    def __getitem__(self, name: Any) -> Any:
        return self._cfg_dict[name]

    def __setitem__(self, name: Any, value: Any) -> None:
        if name in RESERVED_KEYS:
            raise ConfigError(f"{name!r} is a reserved name and cannot be a config key")
        self._cfg_dict[name] = value

    def __delitem__(self, name: Any) -> None:
        del self._cfg_dict[name]

    def __contains__(self, name: object) -> bool:
        return name in self._cfg_dict

    def __iter__(self) -> Iterator:
        return iter(self._cfg_dict)

    def __len__(self) -> int:
        return len(self._cfg_dict)

    def __repr__(self) -> str:
        return f"Config (path: {self.filename}): {self._cfg_dict!r}"

    def to_dict(self) -> dict:
        """The config as plain nested dicts (lists and tuples keep their type)."""
        return to_plain(self._cfg_dict)

    # ------------------------------------------------------------------ copy and pickle
    def __getstate__(self) -> tuple:
        return (
            self._cfg_dict,
            self._filename,
            self._text,
            self._env_variables,
            self._legacy_notes,
        )

    def __setstate__(self, state: tuple) -> None:
        object.__setattr__(self, "_legacy_notes", ())  # absent from older pickles
        for name, value in zip(_INTERNAL, state):
            object.__setattr__(self, name, value)

    def __copy__(self) -> Config:
        other = object.__new__(type(self))
        other.__setstate__(self.__getstate__())
        object.__setattr__(other, "_cfg_dict", self._cfg_dict.copy())
        return other

    copy = __copy__

    def __deepcopy__(self, memo: dict) -> Config:
        other = object.__new__(type(self))
        memo[id(self)] = other
        other.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return other

    # ------------------------------------------------------------------ merge and dump
    def merge_from_dict(self, options: dict, allow_list_keys: bool = True) -> None:
        """Merge dotted-key options (as parsed from ``--cfg-options``) into this config.

        ``{'model.backbone.depth': 50}`` sets one nested key, creating missing dicts;
        with ``allow_list_keys`` digit parts index existing lists (``'pipeline.0.type'``);
        ``{'optim_wrapper._delete_': True}`` empties that dict before the other options land.
        """
        nested = unflatten(options)
        merged = merge_into(
            nested, self._cfg_dict, allow_list_keys, where=" in the options", into="the config"
        )
        object.__setattr__(self, "_cfg_dict", merged)

    def dump(self, file: str | Path | None = None) -> str | None:
        """Write the merged config to ``file`` (format from its extension), or return the text.

        Without ``file`` the text is Python, unless the config was loaded from JSON or YAML.
        ``Config.fromfile`` of the written file gives the same values back (JSON turns tuples
        into lists).
        """
        if file is None:
            fmt = os.path.splitext(self.filename)[1] if self.filename else ".py"
            return self._render(fmt if fmt in SUPPORTED_EXTENSIONS else ".py")
        file = str(file)
        fmt = os.path.splitext(file)[1]
        if fmt not in SUPPORTED_EXTENSIONS:
            raise ConfigError(
                f"cannot dump a config to {file}: unsupported extension {fmt or '(none)'!r}; "
                f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
            )
        text = self._render(fmt)
        with open(file, "w", encoding="utf-8") as f:
            f.write(text)
        return None

    def _render(self, fmt: str) -> str:
        if fmt == ".py":
            return self.pretty_text
        if fmt == ".json":
            return dump_json(self.to_dict())
        return dump_yaml(self.to_dict())
