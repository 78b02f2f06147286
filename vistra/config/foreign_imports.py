"""Imports of OpenMMLab packages inside a config file.

A few upstream configs import from the package they ship with for code that never runs when
the config is read: MMPretrain's ``_base_/models/replknet-31B_in1k.py`` imports
``build_classifier`` for an ``if __name__ == '__main__':`` demo. MMEngine reads those
configs only where MMPretrain is installed; vistra never imports the OpenMMLab packages
(they are not its dependencies, and importing them would register their models), so such
an import binds a stand-in instead. Using a stand-in while the config is read is a
:class:`ConfigError` naming the import; merely importing it is not.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

from vistra.config.errors import ConfigError

OPENMMLAB_PACKAGES = frozenset(
    {"mmcls", "mmpretrain", "mmseg", "mmselfsup", "mmdet", "mmengine", "mmcv", "mmpose"}
)


class AbsentName:
    """What ``from mmpretrain.x import y`` binds in a config: any use but attribute access
    fails, naming the import and the file."""

    def __init__(self, qualname: str, path: str) -> None:
        self._qualname, self._path = qualname, path

    def __getattr__(self, name: str) -> AbsentName:
        if name.startswith("__"):
            raise AttributeError(name)
        return AbsentName(f"{self._qualname}.{name}", self._path)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(
            f"the config calls {self._qualname}, from an OpenMMLab package that "
            f"vistra does not import; a config read by vistra may import such names only for "
            f"code that does not run while it is read (e.g. under if __name__ == '__main__':)"
        )

    def __repr__(self) -> str:
        return f"<{self._qualname}: not imported by vistra>"


def guarded_builtins(path: str) -> dict[str, Any]:
    """Builtins for executing the config at ``path``, with ``__import__`` binding
    :class:`AbsentName` stand-ins for the OpenMMLab packages."""

    def _import(
        name: str,
        globals: Mapping[str, Any] | None = None,  # noqa: A002 - __import__'s signature
        locals: Mapping[str, Any] | None = None,  # noqa: A002
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> Any:
        if level == 0 and name.split(".")[0] in OPENMMLAB_PACKAGES:
            # `import mmpretrain.models` binds the top package, `from m import y` takes y off m
            return AbsentName(name if fromlist else name.split(".")[0], path)
        return builtins.__import__(name, globals, locals, fromlist or (), level)

    table = dict(vars(builtins))
    table["__import__"] = _import
    return table
