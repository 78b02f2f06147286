"""The one exception type the config system raises, and the "did you mean" hint it uses."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """A config that cannot be loaded, merged or written; the message names the file or key."""


class CustomImportError(ConfigError, ImportError):
    """A ``custom_imports`` module that failed to import (also an ``ImportError``, as in MMEngine)."""


def close_matches(name: str, candidates: Iterable[object], n: int = 3) -> list[str]:
    """The candidates closest to ``name``, best first (case-insensitive fallback)."""
    import difflib  # only paid for when an error is being reported

    names = [str(c) for c in candidates]
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in names}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=n)]
    return close


def did_you_mean(name: str, candidates: Iterable[object]) -> str:
    """``' did you mean 'x'?'`` or ``''`` when nothing is close."""
    close = close_matches(name, candidates)
    if not close:
        return ""
    return " did you mean " + " or ".join(repr(c) for c in close) + "?"
