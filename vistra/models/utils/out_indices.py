"""The ``out_indices`` argument of a staged backbone: which stages' outputs ``forward``
returns, checked once at construction so that a typo fails there rather than returning
fewer maps than a neck expects."""

from __future__ import annotations

from collections.abc import Sequence


def parse_out_indices(
    out_indices: int | Sequence[int], num_stages: int, family: str, allow_negative: bool = True
) -> list[int]:
    """``out_indices`` as a list of stage indices in ``range(num_stages)``; negative ones
    count from the end (as MMPretrain's ``-1`` for the last stage) when ``allow_negative``.
    A wrong type is a ``TypeError``, an index out of range a ``ValueError``, both naming
    the argument and the valid range."""
    items = [out_indices] if isinstance(out_indices, int) else out_indices
    if (
        isinstance(out_indices, (str, bytes))
        or not isinstance(items, Sequence)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in items)
    ):
        raise TypeError(
            f"{family} out_indices must be an int or a sequence of ints, got {out_indices!r}"
        )
    low = -num_stages if allow_negative else 0
    parsed = []
    for index in items:
        if not low <= index < num_stages:
            raise ValueError(
                f"{family} out_indices: index {index} is out of range; valid: "
                f"{low}..{num_stages - 1} ({num_stages} stages)"
            )
        parsed.append(index % num_stages)
    return parsed
