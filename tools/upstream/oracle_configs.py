"""``oracle.py configs [--list FILE] [--out FILE] [CONFIG ...]``: MMEngine's merged configs.

For every config file (given as arguments, or one path a line in ``--list FILE``) this runs
MMEngine's ``Config.fromfile(path)`` and records ``cfg.to_dict()``, in one process for all
of them. The result is one JSON object ``{path: merged dict}``, or ``{path: {"error": "..."}}``
where MMEngine fails, written to ``--out`` (default: stdout).

Normalisation (the comparing side applies the same, and nothing more): the dict goes
through ``json.dumps``/``json.loads``, so tuples become lists and non-string keys become
strings; a class or function becomes its dotted name ``module.qualname`` (as
``vistra print-config --json`` writes it) and any other value that JSON cannot hold becomes
its ``repr``. ``custom_imports`` are imported as ``Config.fromfile`` does by default; where
one of them is not installed here (``mmdet.models``), the file is loaded again without
importing them (the merged dict does not depend on the imports) and the entry carries
``"__note__": "<the import error>"``.

Pure-Python configs (``with read_base():``) are loaded as MMEngine does (lazily); their
entry carries ``"__new_style__": true`` so that callers can count them apart. Keys starting
with ``__`` never occur in a merged config (MMEngine drops such names), so these markers
cannot clash with config keys.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import json
import os
import sys
import warnings


class _PkgResourcesShim(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The two ``pkg_resources`` calls MMEngine's ``is_installed``/``get_installed_path``
    make, answered from ``importlib.metadata``, for a setuptools that no longer ships
    ``pkg_resources`` (>= 81). Only installed where the real module is missing; a finder
    too, because MMEngine ``importlib.reload``s the module."""

    def find_spec(self, name, path=None, target=None):
        if name != "pkg_resources":
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if hasattr(module, "DistributionNotFound"):
            return  # a reload: keep the classes callers already caught by name

        class DistributionNotFound(Exception):
            pass

        class _Distribution:
            def __init__(self, dist):
                self._dist = dist
                self.location = os.fspath(dist.locate_file(""))

            def has_metadata(self, name):
                return self._dist.read_text(name) is not None

            def get_metadata(self, name):
                return self._dist.read_text(name) or ""

        def get_distribution(name):
            try:
                return _Distribution(importlib.metadata.distribution(name))
            except importlib.metadata.PackageNotFoundError:
                raise DistributionNotFound(name) from None

        module.DistributionNotFound = DistributionNotFound
        module.get_distribution = get_distribution


def _ensure_pkg_resources() -> None:
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        sys.meta_path.append(_PkgResourcesShim())


def normalise(value):
    """``value`` as the JSON round trip described above makes it."""
    return json.loads(json.dumps(value, default=_json_default, allow_nan=True))


def _json_default(value):
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def _is_new_style(config_cls, path: str) -> bool:
    try:  # MMEngine's own test: `with read_base():` or imports of non-builtin modules
        return bool(config_cls._is_lazy_import(path))
    except Exception:
        return False


def load_one(path: str) -> dict:
    """MMEngine's merged config of ``path``, normalised, or ``{"error": ...}``."""
    from mmengine.config import Config

    new_style = _is_new_style(Config, path)
    try:
        result = _fromfile(Config, path, import_custom_modules=True)
    except ImportError as e:
        if "Failed to import custom modules" not in str(e):
            result = _error(e)
        else:  # e.g. mmdet.models, not installed here: the merged dict does not depend on it
            try:
                result = {**_fromfile(Config, path, False), "__note__": _error(e)["error"]}
            except Exception as e2:
                result = _error(e2)
    except Exception as e:  # any failure is a result: "MMEngine fails on this file"
        result = _error(e)
    if new_style:
        result["__new_style__"] = True
    return result


def _fromfile(config_cls, path: str, import_custom_modules: bool) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = config_cls.fromfile(path, import_custom_modules=import_custom_modules)
        return normalise(cfg.to_dict())


def _error(e: BaseException) -> dict:
    return {"error": " ".join(f"{type(e).__name__}: {e}".split())[:2000]}


def _read_list(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="oracle.py configs", description=__doc__)
    parser.add_argument("configs", nargs="*", help="config files")
    parser.add_argument("--list", help="a file naming one config file a line")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    _ensure_pkg_resources()
    paths = list(args.configs) + (_read_list(args.list) if args.list else [])
    results = {}
    # configs (and the modules custom_imports pulls in) may print: keep stdout for the JSON
    with contextlib.redirect_stdout(sys.stderr):
        for path in paths:
            results[path] = load_one(path)
    text = json.dumps(results, indent=1, allow_nan=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text + "\n")
    return 0
