"""Helpers for the data tests: tiny image files and folder layouts in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or 2-D grey/label) uint8 array as PNG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


def solid_rgb(value: tuple[int, int, int], h: int = 6, w: int = 8) -> np.ndarray:
    return np.broadcast_to(np.array(value, np.uint8), (h, w, 3)).copy()


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    """root/{cat,dog}/*.png: cats are red, dogs are blue; 2 cats, 3 dogs."""
    root = tmp_path / "imgs"
    for i in range(2):
        write_png(root / "cat" / f"c{i}.png", solid_rgb((255, 0, 0)))
    for i in range(3):
        write_png(root / "dog" / "sub" / f"d{i}.png", solid_rgb((0, 0, 255)))
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
