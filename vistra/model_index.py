"""The OpenMMLab model zoo as the upstream wheels describe it: ``.mim/model-index.yml`` and
the ``metafile.yml`` files it imports (model names, configs, published metrics, checkpoint
URLs), read where the wheel's files are -- never copied into vistra, never imported.

Where an index is looked for, all of them read (a package found twice counts once, the
first place wins):

1. the paths given (``vistra list-models --index PATH``): a ``model-index.yml``, a
   ``.mim`` folder, a package folder, a folder of installed packages, or a wheel file
   (``pip download mmpretrain==1.2.0 --no-deps`` gives one; it is read as a zip);
2. the ``DIR`` entries of ``VISTRA_CONFIG_ROOTS`` (folders of installed packages, as for
   ``scope::`` bases; see vistra/config/scopes.py);
3. the installed packages (found with ``importlib.util.find_spec``, which does not run
   them);
4. vistra's upstream-oracle cache (``~/.cache/vistra/upstream-*``, made by
   tools/upstream/install.sh).

torch is not imported here: listing the zoo is instant.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from vistra.config.scopes import ROOTS_ENV, VISTRA_CONFIGS

PACKAGES = ("mmpretrain", "mmseg", "mmselfsup", "mmcls")
ORACLE_CACHE = os.path.join("~", ".cache", "vistra", "upstream-*")
INDEX_FILE = "model-index.yml"


class ModelIndexError(ValueError):
    """An index that cannot be read, or none found; the message says where."""


@dataclass
class ModelEntry:
    """One model of a zoo: what its metafile says, and where its config is."""

    name: str
    package: str
    collection: str
    config: str  # relative to the package's .mim folder: configs/<folder>/<file>.py
    weights: str | None
    results: list[dict[str, Any]] = field(default_factory=list)
    config_path: str = ""  # a file vistra reads: its own shipped copy, else the wheel's
    shipped: bool = False  # vistra ships a config of this name under configs/

    def headline(self) -> str:
        """The first published metric, e.g. ``'ImageNet-1k top-1 72.37'``."""
        for result in self.results:
            metrics = result.get("Metrics") or {}
            for key, value in metrics.items():
                short = {"Top 1 Accuracy": "top-1", "Top 5 Accuracy": "top-5"}.get(key, key)
                return f"{result.get('Dataset', '')} {short} {value}".strip()
        return ""


class _Source:
    """The files of one package's ``.mim`` folder, on disk or inside a wheel."""

    def __init__(self, package: str, where: str, zip_file: zipfile.ZipFile | None = None):
        self.package, self.where, self._zip = package, where, zip_file

    def read(self, relative: str) -> str:
        try:
            if self._zip is not None:
                return self._zip.read(f"{self.package}/.mim/{relative}").decode("utf-8")
            return Path(self.where, relative).read_text(encoding="utf-8")
        except (OSError, KeyError) as exc:
            raise ModelIndexError(f"{self.describe(relative)}: cannot read it ({exc})") from None

    def exists(self, relative: str) -> bool:
        if self._zip is not None:
            return f"{self.package}/.mim/{relative}" in self._zip.NameToInfo
        return Path(self.where, relative).is_file()

    def describe(self, relative: str) -> str:
        if self._zip is not None:
            return f"{self.where}!{self.package}/.mim/{relative}"
        return str(Path(self.where, relative))

    def local_path(self, relative: str) -> str:
        """A path vistra can open (for a wheel: the entry named inside it)."""
        return self.describe(relative)


def _sources_at(path: str) -> list[_Source]:
    """The package indexes at one user-given path (see the module docstring)."""
    path = os.path.expanduser(path)
    if os.path.isfile(path) and path.endswith(".whl"):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ModelIndexError(f"{path}: not a readable wheel ({exc})") from None
        found = [
            _Source(p, path, archive)
            for p in PACKAGES
            if f"{p}/.mim/{INDEX_FILE}" in archive.NameToInfo
        ]
        if not found:
            raise ModelIndexError(f"{path}: the wheel has no <package>/.mim/{INDEX_FILE}")
        return found
    if os.path.isfile(path) and os.path.basename(path) == INDEX_FILE:
        folder = os.path.dirname(os.path.abspath(path))
        return [_Source(_package_of(folder), folder)]
    if os.path.isfile(os.path.join(path, INDEX_FILE)):
        return [_Source(_package_of(os.path.abspath(path)), path)]
    if os.path.isfile(os.path.join(path, ".mim", INDEX_FILE)):
        return [_Source(os.path.basename(os.path.abspath(path)), os.path.join(path, ".mim"))]
    found = _sources_in_folder(path)
    if not found:
        raise ModelIndexError(
            f"{path}: no {INDEX_FILE} there (give a model-index.yml, a .mim folder, a package "
            "folder such as site-packages/mmpretrain, a folder of packages, or a .whl file)"
        )
    return found


def _package_of(mim_folder: str) -> str:
    parent = os.path.basename(os.path.dirname(mim_folder))
    return parent if parent in PACKAGES else os.path.basename(mim_folder)


def _sources_in_folder(folder: str) -> list[_Source]:
    return [
        _Source(p, os.path.join(folder, p, ".mim"))
        for p in PACKAGES
        if os.path.isfile(os.path.join(folder, p, ".mim", INDEX_FILE))
    ]


def _default_sources() -> Iterator[_Source]:
    for entry in filter(None, os.environ.get(ROOTS_ENV, "").split(os.pathsep)):
        if "=" not in entry:
            yield from _sources_in_folder(entry)
    for package in PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                if os.path.isfile(os.path.join(location, ".mim", INDEX_FILE)):
                    yield _Source(package, os.path.join(location, ".mim"))
    for cache in sorted(glob.glob(os.path.expanduser(ORACLE_CACHE))):
        yield from _sources_in_folder(cache)


def find_sources(paths: Iterable[str] = ()) -> list[_Source]:
    """Every package index to read, one per package, the given paths first."""
    chosen: dict[str, _Source] = {}
    for source in [s for p in paths for s in _sources_at(p)] + list(_default_sources()):
        chosen.setdefault(source.package, source)
    if "mmpretrain" in chosen:  # mmcls is MMPretrain's former name: the same zoo, older
        chosen.pop("mmcls", None)
    return list(chosen.values())


def _yaml(source: _Source, relative: str) -> dict:
    try:
        data = yaml.safe_load(source.read(relative))
    except yaml.YAMLError as exc:
        raise ModelIndexError(f"{source.describe(relative)}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelIndexError(f"{source.describe(relative)}: expected a mapping at the top")
    return data


def read_models(source: _Source) -> list[ModelEntry]:
    """The models of one package's index, in the order of its metafiles."""
    entries = []
    for metafile in _yaml(source, INDEX_FILE).get("Import") or []:
        for model in _yaml(source, str(metafile)).get("Models") or []:
            if not isinstance(model, dict) or "Name" not in model:
                continue
            results = model.get("Results") or []
            results = [results] if isinstance(results, dict) else list(results)
            entries.append(
                ModelEntry(
                    name=str(model["Name"]),
                    package=source.package,
                    collection=str(model.get("In Collection", "")),
                    config=str(model.get("Config", "")),
                    weights=model.get("Weights"),
                    results=[r for r in results if isinstance(r, dict)],
                )
            )
    for entry in entries:
        _locate_config(entry, source)
    return entries


def _locate_config(entry: ModelEntry, source: _Source) -> None:
    """vistra's own copy of the config when it ships one of that name, else the wheel's."""
    relative = PurePosixPath(entry.config)
    inside = relative.relative_to("configs") if relative.parts[:1] == ("configs",) else relative
    own = VISTRA_CONFIGS / inside
    if entry.config and own.is_file():
        entry.config_path, entry.shipped = str(own), True
    elif entry.config and source.exists(entry.config):
        entry.config_path = source.local_path(entry.config)


def matches(entry: ModelEntry, pattern: str | None) -> bool:
    """Case-insensitive: a glob (``*``, ``?``, ``[``) over the name or the config path, else a
    substring of either, or of the collection's name."""
    if not pattern:
        return True
    import fnmatch

    pattern = pattern.lower()
    fields = (entry.name.lower(), entry.config.lower(), entry.collection.lower())
    if any(c in pattern for c in "*?["):
        return any(fnmatch.fnmatchcase(f, pattern) for f in fields[:2])
    return any(pattern in f for f in fields)
