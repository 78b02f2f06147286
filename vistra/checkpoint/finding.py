"""Finding the checkpoint to resume from in a work dir."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from vistra.checkpoint.io import is_loadable

logger = logging.getLogger("vistra")

CHECKPOINT_NAME = re.compile(r"^(epoch|iter)_(\d+)\.pth$")


def checkpoint_number(path: Path) -> int:
    m = CHECKPOINT_NAME.match(path.name)
    return int(m.group(2)) if m else -1


def find_latest_checkpoint(work_dir: str | Path) -> Path | None:
    """The newest *loadable* checkpoint in ``work_dir``, or None when there is none.

    ``last_checkpoint`` is tried first (it may hold a path relative to the work dir or an
    absolute one); when that file is corrupt, older ``epoch_N``/``iter_N`` files are tried
    newest first, with a warning naming the skipped file.
    """
    work_dir = Path(work_dir)
    candidates: list[Path] = []
    pointer = work_dir / "last_checkpoint"
    if pointer.is_file():
        target = Path(pointer.read_text().strip())
        candidates.append(target if target.is_absolute() else work_dir / target)
    numbered = [p for p in work_dir.glob("*.pth") if CHECKPOINT_NAME.match(p.name)]
    candidates += sorted(
        numbered, key=lambda p: (p.stat().st_mtime, checkpoint_number(p)), reverse=True
    )
    seen: set[Path] = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        if not path.is_file():
            logger.warning(
                "last_checkpoint names %s, which does not exist; looking for an older one", path
            )
            continue
        if is_loadable(path):
            return path
        logger.warning("checkpoint %s is corrupt or unreadable; trying the previous one", path)
    return None
