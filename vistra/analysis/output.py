"""Files the analysis tools write, each replaced atomically (temp file + ``os.replace``), so
an interrupted run never leaves half a PNG or CSV where a good one was; and a window for
an image, where a display exists."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path``'s content with ``data``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; a plain file is not
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB image as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())


def unique_name(stem: str, taken: set[str], suffix: str = ".png") -> str:
    """``stem + suffix``, or ``stem_1 + suffix``, ... when an earlier image took it (two
    files of one name in different class folders)."""
    name, n = f"{stem}{suffix}", 0
    while name in taken:
        n += 1
        name = f"{stem}_{n}{suffix}"
    taken.add(name)
    return name


_WARNED: list[str] = []


def display_problem() -> str | None:
    """Why no window can open here, or None (Linux without ``DISPLAY``/``WAYLAND_DISPLAY``)."""
    import sys

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no DISPLAY or WAYLAND_DISPLAY is set"
    return None


def show(image: np.ndarray, title: str, wait_time: float = 0.0) -> bool:
    """Show ``image`` in a window: for ``wait_time`` seconds, or until it is closed when
    ``wait_time`` is 0. Without a display, one warning line and False."""
    import sys

    problem = display_problem()
    if problem is None:
        import matplotlib.pyplot as plt  # only here: pyplot picks a GUI backend on import

        if plt.get_backend().lower() in ("agg", "pdf", "ps", "svg", "pgf", "cairo", "template"):
            problem = f"matplotlib backend {plt.get_backend()!r} cannot open windows"
    if problem is not None:
        if not _WARNED:  # one line per run, not one per image
            print(f"warning: cannot show images ({problem}); continuing without", file=sys.stderr)
            _WARNED.append(problem)
        return False
    figure = plt.figure(num=title, clear=True)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.axis("off")
    axes.imshow(image)
    if wait_time > 0:
        plt.show(block=False)
        plt.pause(wait_time)
    else:
        plt.show()
    return True
