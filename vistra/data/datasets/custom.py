"""``CustomDataset``: image classification from class folders or an annotation list (MMPretrain).

Two on-disk layouts, relative to ``data_root/data_prefix``:

1. no ``ann_file``: one sub-folder per class (sorted folder names give labels 0..K-1),
   images anywhere below it; with ``with_label=False`` every image below the prefix;
2. ``ann_file``: one sample per line, ``relative/path.jpg 3`` (path relative to the
   prefix, then the integer label), or just the path when ``with_label=False``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from vistra.data.datasets.base import BaseDataset, list_from_file
from vistra.registry import DATASETS

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif")

_FOLDER_LAYOUT = "<prefix>/<class_name>/<image>.jpg (one sub-folder per class)"
_ANN_LAYOUT = "one '<path relative to data_prefix> <integer label>' per line"


def find_folders(root: str) -> tuple[list[str], dict[str, int]]:
    """Sorted sub-folder names of ``root`` and their label indices."""
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir())
    return folders, {name: i for i, name in enumerate(folders)}


def _walk_files(root: str) -> list[str]:
    """Every file below ``root`` as a sorted list of '/'-joined relative paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in filenames:
            found.append(name if rel == "." else os.path.join(rel, name))
    return sorted(found)


def get_samples(
    root: str, folder_to_idx: dict[str, int] | None, extensions: Sequence[str]
) -> tuple[list[tuple[str, int | None]], set[str]]:
    """``(relative path, label)`` pairs below ``root`` and the class folders left empty.

    With ``folder_to_idx=None`` every image below ``root`` is a sample with label None.
    """
    exts = tuple(e.lower() for e in extensions)
    if folder_to_idx is None:
        return [(p, None) for p in _walk_files(root) if p.lower().endswith(exts)], set()
    samples, used = [], set()
    for folder in sorted(folder_to_idx):
        for path in _walk_files(os.path.join(root, folder)):
            if path.lower().endswith(exts):
                samples.append((os.path.join(folder, path), folder_to_idx[folder]))
                used.add(folder)
    return samples, set(folder_to_idx) - used


@DATASETS.register_module()
class CustomDataset(BaseDataset):
    """Classification samples from class folders or an annotation file (see module doc)."""

    def __init__(
        self,
        data_root: str = "",
        data_prefix: str | dict = "",
        ann_file: str = "",
        with_label: bool = True,
        extensions: Sequence[str] = IMG_EXTENSIONS,
        metainfo: dict | None = None,
        lazy_init: bool = False,
        **kwargs,
    ) -> None:
        if not (ann_file or data_prefix or data_root):
            raise ValueError(
                f"{type(self).__name__} needs one of ann_file, data_root or data_prefix"
            )
        self.extensions = tuple(sorted({e.lower() for e in extensions}))
        self.with_label = with_label
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=data_prefix,
            lazy_init=True,  # subclasses may adjust attributes before the data loads
            **kwargs,
        )
        if not lazy_init:
            self.full_init()

    def load_data_list(self) -> list[dict]:
        samples = self._read_ann_file() if self.ann_file else self._find_samples()
        data_list = []
        for path, label in samples:
            info = {"img_path": os.path.join(self.img_prefix, path)}
            if self.with_label:
                info["gt_label"] = label
            data_list.append(info)
        return data_list

    def _find_samples(self) -> list[tuple[str, int | None]]:
        root = self.img_prefix
        layout = _FOLDER_LAYOUT if self.with_label else "<prefix>/**/<image>.jpg"
        if not Path(root).is_dir():
            raise FileNotFoundError(
                f"{type(self).__name__}: image folder {root!r} does not exist; expected "
                f"{layout}, or pass ann_file= with {_ANN_LAYOUT}"
            )
        if not self.with_label:
            samples, _ = get_samples(root, None, self.extensions)
            self._check_found(samples, root, layout)
            return samples
        classes, folder_to_idx = find_folders(root)
        samples, empty = get_samples(root, folder_to_idx, self.extensions)
        self._check_found(samples, root, layout)
        if self.CLASSES is not None and len(self.CLASSES) != len(classes):
            raise ValueError(
                f"{type(self).__name__}: found {len(classes)} class folders in {root!r} but "
                f"metainfo names {len(self.CLASSES)} classes; pass metainfo=dict(classes=[...]) "
                "with one name per folder"
            )
        if self.CLASSES is None:
            self._metainfo["classes"] = tuple(classes)
        if empty:
            warnings.warn(
                f"no image with extension {', '.join(self.extensions)} in class folder(s) "
                f"{', '.join(sorted(empty))} of {root!r}",
                stacklevel=2,
            )
        self.folder_to_idx = folder_to_idx
        return samples

    def _check_found(self, samples: list, root: str, layout: str) -> None:
        if not samples:
            raise FileNotFoundError(
                f"{type(self).__name__}: found no image ({', '.join(self.extensions)}) in "
                f"{root!r}; expected {layout}"
            )

    def _read_ann_file(self) -> list[tuple[str, int | None]]:
        lines = list_from_file(self.ann_file, f"{type(self).__name__} annotation file")
        if not self.with_label:
            return [(line.strip(), None) for line in lines]
        samples = []
        for number, line in enumerate(lines, 1):
            parts = line.strip().rsplit(" ", 1)
            try:
                samples.append((parts[0], int(parts[1])))
            except (IndexError, ValueError):
                raise ValueError(
                    f"{self.ann_file}:{number}: cannot parse {line!r}; expected {_ANN_LAYOUT} "
                    "(or with_label=False for a list of paths)"
                ) from None
        return samples

    def is_valid_file(self, filename: str) -> bool:
        return filename.lower().endswith(self.extensions)
