"""Files inference writes (drawn images, label PNGs, predictions.json), each atomically: a
temporary file in the same folder, then ``os.replace``, so that an interrupted run never
leaves a half-written file where a good one was."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """An RGB (or label) uint8 array as an image file; the format follows the suffix."""
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower(), "PNG")
    pil = Image.fromarray(np.ascontiguousarray(image))
    return write_atomic(path, lambda f: pil.save(f, format=fmt))


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))
