"""The ``arch`` argument of a zoo backbone: a name in the family's arch table, or a dict of
its own that has the keys the table's entries have."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vistra.registry import did_you_mean


def pick_arch(
    arch: str | Mapping[str, Any], table: Mapping[str, Any], family: str, required: Iterable[str]
) -> dict[str, Any]:
    """The table entry named ``arch``, or ``arch`` itself when it is a dict holding every
    ``required`` key; anything else is a ``ValueError`` naming the valid choices."""
    required = sorted(required)
    if isinstance(arch, str):
        if arch not in table:
            hint = did_you_mean(arch, list(table))
            raise ValueError(
                f"arch={arch!r} is not a {family} arch.{hint} Valid: {sorted(table)} "
                f"or a dict with {', '.join(repr(k) for k in required)}"
            )
        return dict(table[arch])
    if not isinstance(arch, Mapping) or not set(required) <= set(arch):
        got = sorted(arch) if isinstance(arch, Mapping) else repr(arch)
        raise ValueError(
            f"a custom {family} arch must be a dict with "
            f"{', '.join(repr(k) for k in required)}, got {got}"
        )
    return dict(arch)
