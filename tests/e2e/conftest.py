"""Fixtures for end-to-end runs of the real CLI in subprocesses on tiny generated data."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import TINY_CLS


@pytest.fixture
def tiny_cls_config(tmp_path):
    def write(
        name: str = "tiny_cls.py",
        *,
        num_classes: int = 3,
        max_epochs: int = 2,
        num_workers: int = 0,
        extra: str = "",
    ) -> Path:
        path = tmp_path / name
        path.write_text(
            TINY_CLS.format(num_classes=num_classes, max_epochs=max_epochs, num_workers=num_workers)
            + extra
        )
        return path

    return write
