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
