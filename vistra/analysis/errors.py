"""The error the analysis tools raise for a user's mistake (a path, a key, a shape)."""

from __future__ import annotations


class AnalysisError(ValueError):
    """Bad input to an analysis tool; the CLI reports it as one ``error:`` line, exit 2."""
