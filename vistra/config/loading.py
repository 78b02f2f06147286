"""Loading one config file, with its ``_base_`` chain, into one merged dict.

For each file (MMEngine's ``Config._file2dict`` order):

1. read the text and substitute placeholders (predefined variables, environment
   variables) and mark ``{{_base_.x}}`` references (see :mod:`vistra.config.placeholders`);
2. find ``_base_`` (a path or a list of paths, relative to this file, or
   ``'scope::path'`` in a package's config tree: :mod:`vistra.config.scopes`) and load each
   base the same way, recursively; two bases of one file may not define the same top-level
   key;
3. evaluate this file: Python is executed with the merged bases readable as ``_base_``
   (so ``model = _base_.model`` works; as in MMEngine it is the merged bases themselves,
   so ``_base_.train_dataloader.dataset.pipeline = [...]`` changes what is inherited);
   its module-level variables, except modules, functions, classes and names starting
   with ``__``, become the config. JSON and YAML are parsed;
4. merge this file onto its bases (:func:`vistra.config.merge.merge_into`).
"""

from __future__ import annotations

import ast
import os
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

from vistra.config.config_dict import ConfigDict
from vistra.config.errors import ConfigError
from vistra.config.foreign_imports import AbsentName, guarded_builtins
from vistra.config.formats import parse_json, parse_yaml
from vistra.config.merge import merge_into
from vistra.config.placeholders import (
    BaseRef,
    fill_base_refs,
    mark_base_refs,
    resolve_base_ref,
    substitute_env,
    substitute_predefined,
)
from vistra.config.scopes import is_scoped, mark_scope, resolve_scoped_base

BASE_KEY = "_base_"
DEPRECATION_KEY = "_deprecation_"
SUPPORTED_EXTENSIONS = (".py", ".json", ".yaml", ".yml")
_DROPPED_TYPES = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    type,
    AbsentName,
)


@dataclass
class LoadedConfig:
    """A file's merged config, the texts of every file read (bases first), env variables used."""

    cfg: ConfigDict
    text: str
    env_variables: dict[str, str] = field(default_factory=dict)


@dataclass
class _Options:
    predefined: bool
    environment: bool


def load_config_file(
    filename: str,
    use_predefined_variables: bool = True,
    use_environment_variables: bool = True,
) -> LoadedConfig:
    """Load ``filename`` and all its bases into one merged config."""
    path = os.path.abspath(os.path.expanduser(filename))
    check_extension(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    options = _Options(use_predefined_variables, use_environment_variables)
    return _load(path, options, chain=())


def check_extension(path: str) -> str:
    """The extension of ``path`` if it is a supported config format, else a ConfigError."""
    ext = os.path.splitext(path)[1]
    if ext not in SUPPORTED_EXTENSIONS:
        raise ConfigError(
            f"unsupported config file extension {ext or '(none)'!r} for {path}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return ext


def _load(path: str, options: _Options, chain: tuple[str, ...]) -> LoadedConfig:
    if path in chain:
        cycle = " -> ".join([*chain[chain.index(path) :], path])
        raise ConfigError(f"circular _base_ inheritance: {cycle}")
    ext = check_extension(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None

    text = substitute_predefined(raw, path) if options.predefined else raw
    env_used: dict[str, str] = {}
    if options.environment:
        text, env_used = substitute_env(text, path)
    text, refs = mark_base_refs(text, path, quote_outside_json_strings=ext == ".json")

    if ext == ".py":
        tree = parse_python(text, path)
        base_files = _python_base_files(tree, path)
    else:
        data = parse_json(text, path) if ext == ".json" else parse_yaml(text, path)
        base_files = _as_path_list(data.pop(BASE_KEY, []), path, line=None)

    base_cfg, texts = _load_bases(base_files, path, options, (*chain, path), env_used)

    if ext == ".py":
        cfg = _exec_python(tree, path, base_cfg, refs)
        cfg = fill_base_refs(cfg, refs, base_cfg, path, whole=False)
    else:
        cfg = fill_base_refs(data, refs, base_cfg, path, whole=True)

    _warn_deprecated(cfg, path)
    merged = merge_into(cfg, base_cfg, where=f" in {path}")
    merged = ConfigDict({k: v for k, v in merged.items() if not str(k).startswith("__")})
    texts.append(f"{path}\n{raw}")
    return LoadedConfig(merged, "\n".join(texts), env_used)


def _load_bases(
    base_files: list[str],
    path: str,
    options: _Options,
    chain: tuple[str, ...],
    env_used: dict[str, str],
) -> tuple[ConfigDict, list[str]]:
    base_cfg = ConfigDict()
    owner: dict[Any, str] = {}
    texts: list[str] = []
    for base in base_files:
        base_path, scope = _resolve_base_path(base, path)
        loaded = _load(base_path, options, chain)
        if scope is not None:
            loaded.cfg = mark_scope(loaded.cfg, scope)
        for key in loaded.cfg:
            if key in owner:
                raise ConfigError(
                    f"duplicate key {key!r} among the bases of {path}: defined in both "
                    f"{owner[key]} and {base_path}; a key may come from only one base "
                    "(set it in the child config instead)"
                )
            owner[key] = base_path
        base_cfg.update(loaded.cfg)
        texts.append(loaded.text)
        env_used.update(loaded.env_variables)
    return base_cfg, texts


def _resolve_base_path(base: str, path: str) -> tuple[str, str | None]:
    """The file a ``_base_`` entry names and its package scope (``None`` for a plain path)."""
    if is_scoped(base):
        return resolve_scoped_base(base, path)
    base_path = os.path.normpath(os.path.join(os.path.dirname(path), os.path.expanduser(base)))
    if not os.path.isfile(base_path):
        raise ConfigError(
            f"base config {base!r} not found: tried {base_path} (asked for by {path})"
        )
    return base_path, None


def _as_path_list(value: Any, path: str, line: int | None) -> list[str]:
    paths = list(value) if isinstance(value, list | tuple) else [value]
    if not all(isinstance(p, str) for p in paths):
        where = f"{path}:{line}" if line else path
        raise ConfigError(
            f"{where}: _base_ must be a path or a list of paths (strings), got {value!r}"
        )
    return paths


# ---------------------------------------------------------------------------- Python configs
def parse_python(text: str, path: str) -> ast.Module:
    """The AST of a Python config; a syntax error names the file, line and column."""
    try:
        return ast.parse(text, filename=path)
    except SyntaxError as e:
        code = f": {e.text.strip()}" if e.text and e.text.strip() else ""
        raise ConfigError(
            f"{path}:{e.lineno}:{e.offset}: invalid Python syntax: {e.msg}{code}"
        ) from None


def _is_base_assign(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == BASE_KEY
    )


def _python_base_files(tree: ast.Module, path: str) -> list[str]:
    """Read the first top-level ``_base_ = ...`` and remove every such line from ``tree``."""
    for node in tree.body:
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call)
            and getattr(item.context_expr.func, "id", None) == "read_base"
            for item in node.items
        ):
            raise ConfigError(
                f"{path}:{node.lineno}: pure-Python configs ('with read_base():') are not "
                "supported; inherit with _base_ = [...] instead"
            )
    assigns = [node for node in tree.body if _is_base_assign(node)]
    if not assigns:
        return []
    first = assigns[0]
    try:
        code = compile(ast.Expression(body=first.value), path, "eval")
        value = eval(code, {"__builtins__": {}})  # literals and + only: no names are visible
    except Exception as e:
        raise ConfigError(
            f"{path}:{first.lineno}: _base_ must be written as literal paths: {e}"
        ) from None
    tree.body = [node for node in tree.body if not _is_base_assign(node)]
    return _as_path_list(value, path, first.lineno)


def _exec_python(tree: ast.Module, path: str, base_cfg: ConfigDict, refs: dict) -> dict:
    # the bases themselves, not a copy: MMEngine lets a config assign into `_base_`
    namespace: dict[str, Any] = {
        BASE_KEY: base_cfg,
        "__file__": path,
        "__builtins__": guarded_builtins(path),
    }
    used_names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    for token, ref in refs.items():
        if token in used_names:  # a {{_base_.x}} that stands for a whole value
            namespace[token] = resolve_base_ref(ref, base_cfg, path)
    try:
        exec(compile(tree, path, "exec"), namespace)
    except Exception as e:
        raise ConfigError(f"{_error_location(e, path)}: {_describe(e, refs)}") from e
    return {
        key: value
        for key, value in namespace.items()
        if key != BASE_KEY and not key.startswith("__") and not isinstance(value, _DROPPED_TYPES)
    }


def _error_location(error: BaseException, path: str) -> str:
    line = error.lineno if isinstance(error, SyntaxError) else None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{path}:{line}" if line else path


def _describe(error: BaseException, refs: dict[str, BaseRef]) -> str:
    message = f"{type(error).__name__}: {error}"
    for token, ref in refs.items():  # show placeholders as written, not as tokens
        message = message.replace(token, ref.text)
    return message


def _warn_deprecated(cfg: dict, path: str) -> None:
    info = cfg.pop(DEPRECATION_KEY, None)
    if info is None:
        return
    message = f"The config file {path} will be deprecated in the future."
    if isinstance(info, dict) and "expected" in info:
        message += f" Please use {info['expected']} instead."
    if isinstance(info, dict) and "reference" in info:
        message += f" More information can be found at {info['reference']}"
    warnings.warn(message, DeprecationWarning, stacklevel=2)
