"""Every test under tests/upstream compares vistra with the upstream packages (marker
``upstream``); they install the oracle on first use (tools/upstream/install.sh, cached)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.upstream)


def pytest_terminal_summary(terminalreporter):
    from oracle_support import FULL, SUMMARY

    if SUMMARY:
        scope = "every upstream config" if FULL else "the default sample"
        terminalreporter.section(f"upstream oracle ({scope})")
        for line in SUMMARY:
            terminalreporter.write_line(line)
