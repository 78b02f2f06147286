"""One flat set of named registries that map config ``type`` strings to classes.

The registry is torch-free: it imports the packages that fill it (``locations``) only
when a name is first looked up, so ``vistra print-config`` never pays for torch.

OpenMMLab scope prefixes (``mmseg.ResNet``, ``mmpretrain.Accuracy``) and ``_scope_`` keys
are accepted and ignored: vistra has one scope.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any


class RegistryError(KeyError):
    """An unknown type, a bad argument or a failed build, with a message a user can act on."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly instead
        return str(self.args[0]) if self.args else ""


def _strip_scope(name: str) -> str:
    # 'mmseg.ResNetV1c' -> 'ResNetV1c'; a plain name is left alone.
    return name.rsplit(".", 1)[-1] if "." in name else name


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
        self._locations = list(locations or [])
        self._imported = False

    # ------------------------------------------------------------------ registration
    def register_module(
        self,
        name: str | list[str] | None = None,
        force: bool = False,
        module: Any = None,
    ) -> Any:
        """Register a class or function, as a decorator or as a call.

        ``@MODELS.register_module()``, ``@MODELS.register_module(name='Foo')``,
        ``MODELS.register_module(module=Foo, force=True)``.
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
            self._register(module, name, force)
            return module

        def decorator(obj: Any) -> Any:
            self._register(obj, name, force)
            return obj

        return decorator

    def _register(self, obj: Any, name: str | list[str] | None, force: bool) -> None:
        if not callable(obj):
            raise TypeError(f"only classes and functions can be registered, got {obj!r}")
        names = [obj.__name__] if name is None else [name] if isinstance(name, str) else name
        for key in names:
            existing = self._modules.get(key)
            if existing is not None and existing is not obj and not force:
                raise RegistryError(
                    f"cannot register {_qualname(obj)} as {key!r}: {key!r} is already "
                    f"registered in the {self.name} registry (by {_qualname(existing)}); "
                    "register it under another name (register_module(name='...')) or pass "
                    "force=True to replace the existing one"
                )
            self._modules[key] = obj

    # ------------------------------------------------------------------ lookup
    def _import_locations(self) -> None:
        if self._imported:
            return
        self._imported = True
        for location in self._locations:
            importlib.import_module(location)

    def get(self, name: str) -> Any | None:
        """The registered object for ``name`` (scope prefix ignored), or None."""
        key = _strip_scope(name)
        if key not in self._modules:
            self._import_locations()
        return self._modules.get(key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        self._import_locations()
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        self._import_locations()
        return iter(sorted(self._modules))

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
    args.pop("_scope_", None)
    if "type" not in args:
        raise RegistryError(
            f"{registry.name} config{where} has no 'type' key; got keys {sorted(args)}"
        )
    obj_type = args.pop("type")
    if isinstance(obj_type, str):
        obj_cls = registry.get(obj_type)
        if obj_cls is None:
            hint = did_you_mean(_strip_scope(obj_type), registry.keys())
            raise RegistryError(
                f"unknown {registry.name} type {obj_type!r}{where}.{hint}"
                + ("" if hint else f" Registered: {', '.join(registry.keys())}.")
                + f" A class of your own must be registered (@{_variable(registry)}"
                ".register_module()) in a module that the config imports: custom_imports = "
                "dict(imports=['my_module']), with my_module on PYTHONPATH"
            )
        type_name = obj_type
    elif callable(obj_type):
        obj_cls = obj_type
        type_name = getattr(obj_type, "__name__", repr(obj_type))
    else:
        raise TypeError(f"'type'{where} must be a str or a class, got {obj_type!r}")

    check_arguments(obj_cls, args, type_name, where)
    try:
        return obj_cls(**args)
    except RegistryError:
        raise  # already names the culprit
    except Exception as exc:
        shown = ", ".join(f"{k}={_short_repr(v)}" for k, v in args.items())
        raise _same_kind(exc, f"{type_name}({shown}){where} failed: {exc}") from exc


def check_arguments(obj_cls: Callable, args: Mapping[str, Any], type_name: str, where: str) -> None:
    """Fail with the closest valid names when ``args`` holds a name the constructor lacks."""
    try:
        sig = inspect.signature(obj_cls)
    except (TypeError, ValueError):  # builtins without a signature
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in args:
        if key not in params:
            hint = did_you_mean(key, valid)
            raise RegistryError(
                f"{type_name}{where} got an unexpected argument {key!r}.{hint}"
                f" Valid arguments: {', '.join(valid)}"
            )


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
