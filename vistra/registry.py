"""One flat set of named registries that map config ``type`` strings to classes.

The registry is torch-free: it imports the packages that fill it (``locations``) only
when a name is first looked up, so ``vistra print-config`` never pays for torch.

Scopes. Most names mean the same class whichever OpenMMLab package a config comes from,
and one flat table holds them. A few type names mean different classes in different
packages (MMSegmentation's ``ResNetV1c`` names its stem parameters unlike MMPretrain's;
MMSelfSup's ``ResNet`` counts the stem as ``out_indices`` 0; MMSegmentation's
``VisionTransformer`` takes ``embed_dims``/``num_layers`` where MMPretrain's takes
``arch``). Those register a *scoped variant*: ``register_module(scope='mmseg')``. A lookup
picks the variant of the scope in force, else the plain entry. The scope in force is, in
order: a prefix in the name (``mmseg.ResNetV1c``), a ``_scope_`` key in the config dict
being built (for it and everything it builds), the :func:`default_scope` context (the
Runner enters the config's ``default_scope``). ``mmcls`` is MMPretrain's former name: a
lookup in scope ``mmcls`` takes an ``mmcls`` variant where one is registered (MMCls 1.0rc's
``BEiT`` backbone, which MMPretrain's ``BEiT`` algorithm shadows), else ``mmpretrain``'s.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import functools
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# Scopes whose lookups fall back to another package's variants, in the order tried.
SCOPE_FALLBACKS = {"mmcls": ("mmcls", "mmpretrain")}
_SCOPE: contextvars.ContextVar[str | None] = contextvars.ContextVar("vistra_scope", default=None)


def normalise_scope(scope: str | None) -> str | None:
    """``''`` -> None; a package name (``'mmseg'``, ``'mmcls'``) unchanged."""
    return scope or None


def lookup_scopes(scope: str | None) -> tuple[str, ...]:
    """The scopes whose variants a lookup in ``scope`` takes, in order."""
    if not scope:
        return ()
    return SCOPE_FALLBACKS.get(scope, (scope,))


def current_scope() -> str | None:
    """The OpenMMLab package scope in force for lookups (None: no package preference)."""
    return _SCOPE.get()


@contextlib.contextmanager
def default_scope(scope: str | None) -> Iterator[None]:
    """Look names up in ``scope`` (e.g. a config's ``default_scope``) inside the block.

    ``None`` or ``''`` keeps the scope already in force.
    """
    if not scope:
        yield
        return
    token = _SCOPE.set(normalise_scope(scope))
    try:
        yield
    finally:
        _SCOPE.reset(token)


class RegistryError(KeyError):
    """An unknown type, a bad argument or a failed build, with a message a user can act on."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly instead
        return str(self.args[0]) if self.args else ""


def _strip_scope(name: str) -> str:
    # 'mmseg.ResNetV1c' -> 'ResNetV1c'; a plain name is left alone.
    return name.rsplit(".", 1)[-1] if "." in name else name


def _split_scope(name: str) -> tuple[str | None, str]:
    # 'mmseg.ResNetV1c' -> ('mmseg', 'ResNetV1c'); 'ResNet' -> (None, 'ResNet')
    if "." not in name:
        return None, name
    prefix, key = name.rsplit(".", 1)
    return normalise_scope(prefix.split(".")[0]), key


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...], n: int = 3) -> str:
    """A ``did you mean ...?`` hint, or ``''`` when nothing is close."""
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=n)]
    if not close:
        return ""
    return " did you mean " + " or ".join(repr(c) for c in close) + "?"


class Registry:
    """Maps names to classes (or functions) and builds them from config dicts."""

    def __init__(self, name: str, locations: list[str] | None = None) -> None:
        self.name = name
        self._modules: dict[str, Any] = {}
        self._scoped: dict[tuple[str, str], Any] = {}  # (scope, name) -> a package's variant
        self._locations = list(locations or [])
        self._imported = False
        # name prefix -> a function that registers that family on first use
        self._prefix_loaders: dict[str, Any] = {}

    # ------------------------------------------------------------------ registration
    def register_module(
        self,
        name: str | list[str] | None = None,
        force: bool = False,
        module: Any = None,
        scope: str | None = None,
    ) -> Any:
        """Register a class or function, as a decorator or as a call.

        ``@MODELS.register_module()``, ``@MODELS.register_module(name='Foo')``,
        ``MODELS.register_module(module=Foo, force=True)``. With ``scope='mmseg'`` the
        class is that package's variant of the name (see the module docstring).
        """
        if name is not None and not isinstance(name, (str, list)):
            raise TypeError(f"register_module(name=...) takes a str or a list of str, got {name!r}")
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller != "vistra" and not caller.startswith("vistra."):
            # A user's module: fill the registry first, so that a name vistra already uses
            # is an error here, naming the user's class, and not later inside vistra's own
            # import (or, worse, a silent replacement of vistra's class).
            self._import_locations()
        if module is not None:
            self._register(module, name, force, scope)
            return module

        def decorator(obj: Any) -> Any:
            self._register(obj, name, force, scope)
            return obj

        return decorator

    def _register(
        self, obj: Any, name: str | list[str] | None, force: bool, scope: str | None = None
    ) -> None:
        if not callable(obj):
            raise TypeError(f"only classes and functions can be registered, got {obj!r}")
        names = [obj.__name__] if name is None else [name] if isinstance(name, str) else name
        scope = normalise_scope(scope)
        for key in names:
            table, slot = (self._scoped, (scope, key)) if scope else (self._modules, key)
            existing = table.get(slot)
            if existing is not None and existing is not obj and not force:
                where = f" for scope {scope!r}" if scope else ""
                raise RegistryError(
                    f"cannot register {_qualname(obj)} as {key!r}{where}: {key!r} is already "
                    f"registered in the {self.name} registry (by {_qualname(existing)}); "
                    "register it under another name (register_module(name='...')) or pass "
                    "force=True to replace the existing one"
                )
            table[slot] = obj

    def register_prefix_loader(self, prefix: str, loader: Any) -> None:
        """Call ``loader()`` (which registers names starting with ``prefix``) the first
        time a name with that prefix is looked up: e.g. ``torchvision/<Name>``, whose
        registration imports torchvision, which costs every process ~1.5 s otherwise."""
        self._prefix_loaders[prefix] = loader

    def _load_prefix(self, key: str) -> bool:
        for prefix, loader in list(self._prefix_loaders.items()):
            if key.startswith(prefix):
                del self._prefix_loaders[prefix]
                loader()
                return True
        return False

    # ------------------------------------------------------------------ lookup
    def _import_locations(self) -> None:
        if self._imported:
            return
        self._imported = True
        for location in self._locations:
            importlib.import_module(location)

    def get(self, name: str, scope: str | None = None) -> Any | None:
        """The registered object for ``name``, or None.

        The variant of the scope in force (the name's prefix, else ``scope``, else
        :func:`current_scope`) is preferred; then the plain entry; then, when no plain
        entry exists, the one variant registered under that name.
        """
        prefix, key = _split_scope(name)
        self._import_locations()
        scope = prefix or normalise_scope(scope) or current_scope()
        for candidate in lookup_scopes(scope):
            if (candidate, key) in self._scoped:
                return self._scoped[(candidate, key)]
        if key in self._modules:
            return self._modules[key]
        variants = [obj for (_, k), obj in self._scoped.items() if k == key]
        if not variants and self._load_prefix(key):
            return self.get(name, scope)
        return variants[0] if len(variants) == 1 else None

    def scopes_of(self, name: str) -> list[str]:
        """The scopes that register their own variant of ``name``."""
        self._import_locations()
        key = _strip_scope(name)
        return sorted(s for s, k in self._scoped if k == key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        self._import_locations()
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        self._import_locations()
        return iter(sorted(set(self._modules) | {k for _, k in self._scoped}))

    def keys(self) -> list[str]:
        return list(self)

    def __repr__(self) -> str:
        return f"Registry(name={self.name!r}, items={len(self._modules)})"

    # ------------------------------------------------------------------ build
    def build(
        self,
        cfg: Mapping[str, Any],
        default_args: Mapping[str, Any] | None = None,
        key_path: str = "",
    ) -> Any:
        """Build ``cfg['type']`` with the remaining keys as arguments.

        Nested config dicts are passed through unchanged: the built object decides what
        to build from them. ``key_path`` (e.g. ``'model.backbone'``) only improves errors.
        """
        return build_from_cfg(cfg, self, default_args=default_args, key_path=key_path)


def build_from_cfg(
    cfg: Mapping[str, Any],
    registry: Registry,
    default_args: Mapping[str, Any] | None = None,
    key_path: str = "",
) -> Any:
    """Build an object from a config dict whose ``type`` names a registered class."""
    where = f" (config key '{key_path}')" if key_path else ""
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{registry.name} config{where} must be a dict, got {type(cfg).__name__}")
    args = dict(cfg)
    for key, value in (default_args or {}).items():
        args.setdefault(key, value)
    scope = args.pop("_scope_", None)
    if "type" not in args:
        raise RegistryError(
            f"{registry.name} config{where} has no 'type' key; got keys {sorted(args)}"
        )
    obj_type = args.pop("type")
    if isinstance(obj_type, str):
        obj_cls = registry.get(obj_type, scope=scope)
        if obj_cls is None:
            raise RegistryError(unknown_type_message(registry, obj_type, key_path))
        type_name = obj_type
    elif callable(obj_type):
        obj_cls = obj_type
        type_name = getattr(obj_type, "__name__", repr(obj_type))
    else:
        raise TypeError(f"'type'{where} must be a str or a class, got {obj_type!r}")

    key_path = key_path or _nested_key_path(cfg)
    check_arguments(obj_cls, args, type_name, key_path)
    token = _BUILDING.set((key_path, cfg))
    try:
        with default_scope(scope):  # a `_scope_` holds for everything this object builds
            return obj_cls(**args)
    except Exception as exc:
        if isinstance(exc, RegistryError) or getattr(exc, "vistra_build_error", False):
            raise  # already names the culprit (an inner build, an unknown type)
        raise _build_error(exc, obj_cls, type_name, args, key_path, cfg) from exc
    finally:
        _BUILDING.reset(token)


# What is being built right now: (its key path, its config). A build inside a constructor
# that was not told its key path (a head building its loss) finds it in its parent's config.
_BUILDING: contextvars.ContextVar[tuple[str, Any] | None] = contextvars.ContextVar(
    "vistra_building", default=None
)


def _nested_key_path(cfg: Any) -> str:
    parent = _BUILDING.get()
    if parent is None or not parent[0]:
        return ""
    found = _find_in(parent[1], cfg, parent[0], depth=3)
    return found or ""


def _find_in(container: Any, target: Any, prefix: str, depth: int) -> str | None:
    """The key path of ``target`` inside ``container`` (by identity, else equality)."""
    if depth == 0:
        return None
    items: list[tuple[str, Any]] = []
    if isinstance(container, Mapping):
        items = [(f"{prefix}.{k}", v) for k, v in container.items()]
    elif isinstance(container, (list, tuple)):
        items = [(f"{prefix}[{i}]", v) for i, v in enumerate(container)]
    for path, value in items:
        if value is target:
            return path
    for path, value in items:
        if isinstance(value, Mapping) and value == target:
            return path
    for path, value in items:
        if isinstance(value, (Mapping, list, tuple)):
            found = _find_in(value, target, path, depth - 1)
            if found:
                return found
    return None


def _build_error(
    exc: Exception, obj_cls: Any, type_name: str, args: Mapping[str, Any], key_path: str, cfg: Any
) -> Exception:
    """One short line for a constructor that failed: the config key and value it most likely
    failed on (never the repr of every argument), what is valid where the class has an arch
    table, and the constructor's own message."""
    reason = _short_text(f"{type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc))
    culprit = _culprit(exc, args, cfg)
    if culprit is not None:
        where = f"{key_path}.{culprit}" if key_path else culprit
        value = args[culprit]
        valid = arch_choices(obj_cls, culprit, value)
        if valid is not None:
            message = (
                f"{where}={value!r}: {type_name} has no such {culprit}; valid: "
                f"{', '.join(map(repr, valid))}.{did_you_mean(str(value), [str(v) for v in valid])}"
            )
        else:
            message = f"{where}={_short_repr(value)}: {type_name} rejected it: {reason}"
    else:
        where = f" (config key '{key_path}')" if key_path else ""
        message = f"{type_name}{where} failed: {reason}"
    error = RegistryError(message) if isinstance(exc, KeyError) else _same_kind(exc, message)
    error.vistra_build_error = True  # type: ignore[attr-defined]
    return error


def _culprit(exc: Exception, args: Mapping[str, Any], cfg: Any) -> str | None:
    """The argument a constructor's error names: a KeyError on its value (an arch-table
    lookup), or the one scalar argument given in the config whose value the message quotes."""
    given = {k: v for k, v in args.items() if isinstance(cfg, Mapping) and k in cfg}
    scalars = {
        k: v
        for k, v in given.items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool) and k != "type"
    }
    if isinstance(exc, KeyError) and exc.args:
        hits = [k for k, v in scalars.items() if v == exc.args[0]]
        if len(hits) == 1:
            return hits[0]
    text = str(exc)
    named = [k for k, v in scalars.items() if re.search(rf"\b{re.escape(k)}\b", text)]
    quoted = [k for k, v in scalars.items() if _quotes(text, v)]
    for hits in ([k for k in named if k in quoted], quoted, named):
        if len(hits) == 1:
            return hits[0]
    return None


def _quotes(text: str, value: Any) -> bool:
    shown = str(value)
    if not shown or len(shown) > 60:
        return False
    return re.search(rf"(?<![\w.]){re.escape(shown)}(?![\w])", text) is not None or (
        repr(value) in text
    )


def arch_choices(obj_cls: Any, name: str, value: Any) -> list | None:
    """The keys of the arch table ``name`` selects from (``depth`` in ResNet's
    ``arch_settings``, ``arch`` in ViT's ``arch_zoo``), when ``value`` is not one of them."""
    if name not in ("arch", "depth") or not inspect.isclass(obj_cls):
        return None
    for attr in ("arch_settings", "arch_zoo"):
        table = getattr(obj_cls, attr, None)
        if isinstance(table, Mapping) and table:
            try:
                if value in table:
                    return None
            except TypeError:  # an unhashable value (an arch dict)
                return None
            return list(table)
    return None


def _short_text(text: str, limit: int = 300) -> str:
    """A message cut in the middle to ``limit`` characters: the start names the problem,
    the end usually says what to do."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return text[:head] + " ... " + text[-(limit - head - 5) :]


def unknown_type_message(registry: Registry, obj_type: str, key_path: str = "") -> str:
    """The error for a ``type`` that ``registry`` does not hold: the closest names, and how
    a class of the user's own gets registered."""
    where = f" (config key '{key_path}')" if key_path else ""
    hint = did_you_mean(_strip_scope(obj_type), registry.keys())
    return (
        f"unknown {registry.name} type {obj_type!r}{where}.{hint}"
        + ("" if hint else f" Registered: {', '.join(registry.keys())}.")
        + f" A class of your own must be registered (@{_variable(registry)}"
        ".register_module()) in a module that the config imports: custom_imports = "
        "dict(imports=['my_module']), with my_module on PYTHONPATH"
    )


def check_arguments(
    obj_cls: Callable, args: Mapping[str, Any], type_name: str, key_path: str = ""
) -> None:
    """Fail with the closest valid names when ``args`` holds a name the constructor lacks.

    A subclass whose ``__init__`` takes ``**kwargs`` only to hand them to
    ``super().__init__`` is checked against the whole chain of constructors it forwards to.
    """
    valid = accepted_arguments(obj_cls)
    if valid is None:
        return
    for key in args:
        if key not in valid:
            hint = did_you_mean(key, valid)
            at = f" (config key '{key_path}.{key}')" if key_path else ""
            raise RegistryError(
                f"{type_name} got an unexpected argument {key!r}{at}.{hint}"
                f" Valid arguments: {', '.join(valid)}"
            )


_FORWARDS_KWARGS = re.compile(r"super\(\s*(?:\w+\s*,\s*\w+\s*)?\)\.__init__\([^#]*\*\*kwargs")


def accepted_arguments(obj: Callable) -> tuple[str, ...] | None:
    """The keyword arguments ``obj`` accepts, or None when that cannot be known
    (``**kwargs`` that go anywhere but up the constructor chain)."""
    if not inspect.isclass(obj):
        return _function_arguments(obj)
    return _class_arguments(obj)


def _function_arguments(fn: Callable) -> tuple[str, ...] | None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(_named(params))


@functools.cache
def _class_arguments(cls: type) -> tuple[str, ...] | None:
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object or _is_torch_module_base(klass):
            return tuple(names)  # the chain ends: nn.Module takes no config arguments
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return None
        names += [n for n in _named(params) if n != "self" and n not in names]
        var_kw = [n for n, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD]
        if not var_kw or var_kw[0] == "unexpected":  # `**unexpected`: caught and rejected
            return tuple(names)
        try:
            source = inspect.getsource(init)
        except (OSError, TypeError):
            return None
        if not _FORWARDS_KWARGS.search(re.sub(r"\s+", " ", source)):
            return None  # **kwargs go somewhere else (a built sub-object, timm, ...)
    return tuple(names)


def _named(params: Mapping[str, inspect.Parameter]) -> list[str]:
    keep = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in params.items() if p.kind in keep]


def _is_torch_module_base(klass: type) -> bool:
    return klass.__module__ == "torch.nn.modules.module" and klass.__name__ == "Module"


def _variable(registry: Registry) -> str:
    """The name under which vistra.registry holds ``registry`` (``'DATASETS'``), for errors."""
    return next((k for k, v in globals().items() if v is registry), "REGISTRY")


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same_kind(exc: Exception, message: str) -> Exception:
    """``exc``'s class with a new message when it takes one (so callers can still catch
    ValueError etc.), else a RuntimeError."""
    try:
        return type(exc)(message)
    except Exception:
        return RuntimeError(message)


# The named registries. ``locations`` are imported on first lookup, so that a config's
# ``type='ResNet'`` finds the class without the caller importing vistra.models first.
MODELS = Registry("model", ["vistra.models"])
DATASETS = Registry("dataset", ["vistra.data.datasets"])
TRANSFORMS = Registry("transform", ["vistra.data.transforms"])
DATA_SAMPLERS = Registry("data sampler", ["vistra.data.samplers"])
FUNCTIONS = Registry("function", ["vistra.data.collate"])
METRICS = Registry("metric", ["vistra.evaluation"])
EVALUATOR = Registry("evaluator", ["vistra.evaluation"])
HOOKS = Registry("hook", ["vistra.engine.hooks"])
LOOPS = Registry("loop", ["vistra.engine.loops"])
OPTIMIZERS = Registry("optimizer", ["vistra.engine.optim"])
OPTIM_WRAPPERS = Registry("optimizer wrapper", ["vistra.engine.optim"])
OPTIM_WRAPPER_CONSTRUCTORS = Registry("optimizer wrapper constructor", ["vistra.engine.optim"])
PARAM_SCHEDULERS = Registry("parameter scheduler", ["vistra.engine.schedulers"])
WEIGHT_INITIALIZERS = Registry("weight initializer", ["vistra.models.init"])
VISUALIZERS = Registry("visualizer", ["vistra.visualization"])
VISBACKENDS = Registry("visualization backend", ["vistra.visualization"])
LOG_PROCESSORS = Registry("log processor", ["vistra.engine.logging"])
RUNNERS = Registry("runner", ["vistra.engine.runner"])
MODEL_WRAPPERS = Registry("model wrapper", ["vistra.dist"])
TASK_UTILS = Registry("task util", ["vistra.models"])

__all__ = [
    "Registry",
    "accepted_arguments",
    "arch_choices",
    "check_arguments",
    "unknown_type_message",
    "current_scope",
    "default_scope",
    "normalise_scope",
    "RegistryError",
    "build_from_cfg",
    "did_you_mean",
    "MODELS",
    "DATASETS",
    "TRANSFORMS",
    "DATA_SAMPLERS",
    "FUNCTIONS",
    "METRICS",
    "EVALUATOR",
    "HOOKS",
    "LOOPS",
    "OPTIMIZERS",
    "OPTIM_WRAPPERS",
    "OPTIM_WRAPPER_CONSTRUCTORS",
    "PARAM_SCHEDULERS",
    "WEIGHT_INITIALIZERS",
    "VISUALIZERS",
    "VISBACKENDS",
    "LOG_PROCESSORS",
    "RUNNERS",
    "MODEL_WRAPPERS",
    "TASK_UTILS",
]
