"""The state one 0.x -> 1.x translation passes between its steps."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from vistra.config.errors import ConfigError, did_you_mean

TASKS = ("segmentation", "classification", "selfsup")


@dataclass
class LegacyContext:
    """One translation: the 0.x config as loaded (``old``, read only) and the 1.x config
    being written (``new``, a copy of ``old`` that each step rewrites: it pops the 0.x keys it
    consumes and sets the 1.x keys it produces).

    ``preprocessor`` collects what 0.x pipelines did on the CPU that 1.x does in the model's
    data preprocessor: ``mean``, ``std``, ``to_rgb`` (from ``Normalize``), ``size``,
    ``size_divisor``, ``pad_val``, ``seg_pad_val`` (from ``Pad``). The model step writes it
    into ``model.data_preprocessor``.
    """

    source: str
    old: dict[str, Any]
    task: str
    iter_based: bool
    new: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    preprocessor: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.new:
            self.new = copy.deepcopy(self.old)

    def note(self, message: str) -> None:
        """Record one line of what was translated (shown by ``vistra migrate-config``)."""
        self.notes.append(message)

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError naming the file and the 0.x key: ``raise ctx.error('lr_config', ...)``."""
        return ConfigError(f"{self.source}: {key}: {message}")


def unsupported(ctx: LegacyContext, key: str, what: str, name: Any, valid: Any) -> ConfigError:
    """``unsupported <what> 'name'; did you mean ...? supported: ...`` for ``key``."""
    hint = did_you_mean(str(name), valid)
    return ctx.error(key, f"unsupported {what} {name!r};{hint} supported: {', '.join(valid)}")
