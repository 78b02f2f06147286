"""The one error type of checkpoint handling."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, unsafe or does not fit the model."""
