"""``BaseSegDataset``: MMSegmentation 1.x's semantic-segmentation dataset.

A sample is an image plus a label PNG of the same name (``<stem><img_suffix>`` and
``<stem><seg_map_suffix>``, each suffix including its extension)::

    data_root/
      img_dir/train/xxx{img_suffix}     ann_dir/train/xxx{seg_map_suffix}
      img_dir/val/...                   ann_dir/val/...

``data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train')`` names the two
folders (relative to ``data_root``). Without ``ann_file`` the image folder is scanned
recursively and the samples are sorted by path; with ``ann_file`` (one stem per line, no
suffix) the samples follow the file's order. Leaving ``seg_map_path`` out of
``data_prefix`` loads images only (inference on unlabelled data).

Every sample carries ``img_path``, ``seg_map_path``, ``label_map``, ``reduce_zero_label``
and ``seg_fields=[]``; ``LoadAnnotations`` reads the mask and applies
``reduce_zero_label`` and ``label_map``.

Training on a subset of a dataset's classes (``metainfo=dict(classes=(...))``) gives
``label_map = {old id: new id}``, with 255 (ignored) for the classes left out, and the
matching subset of the palette (MMSeg's ``get_label_map``/``_update_palette``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import numpy as np

from vistra.data.datasets.base import BaseDataset, list_from_file
from vistra.data.errors import DataError
from vistra.data.image_io import check_backend_args
from vistra.registry import DATASETS, check_arguments, did_you_mean

IGNORE_LABEL = 255  # what label_map assigns to the classes left out


@DATASETS.register_module()
class BaseSegDataset(BaseDataset):
    """Image/mask pairs from two folders (see the module docstring for the layout)."""

    METAINFO: ClassVar[dict] = dict()
    # The dataset's usual layout, quoted when a folder or file is missing.
    LAYOUT: ClassVar[str] = (
        "data_root/img_dir/train/*{img_suffix} with masks in data_root/ann_dir/train/*{seg_map_suffix}"
    )

    def __init__(
        self,
        ann_file: str = "",
        img_suffix: str = ".jpg",
        seg_map_suffix: str = ".png",
        metainfo: dict | None = None,
        data_root: str | None = None,
        data_prefix: dict = dict(img_path="", seg_map_path=""),  # noqa: B006 - MMSeg's; copied
        filter_cfg: dict | None = None,
        indices: int | Sequence[int] | None = None,
        serialize_data: bool = True,
        pipeline: Sequence[dict | Callable] = (),
        test_mode: bool = False,
        lazy_init: bool = False,
        max_refetch: int = 1000,
        ignore_index: int = 255,
        reduce_zero_label: bool = False,
        backend_args: dict | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        if not isinstance(ann_file, str):
            raise TypeError(
                f"{type(self).__name__}: ann_file must be one file name, got {ann_file!r}; to "
                "join several splits use dict(type='ConcatDataset', datasets=[...]) with one "
                "dataset per ann_file"
            )
        if not isinstance(data_prefix, Mapping):
            raise TypeError(
                f"{type(self).__name__}: data_prefix must be a dict such as "
                f"dict(img_path='img_dir/train', seg_map_path='ann_dir/train'), got {data_prefix!r}"
            )
        check_backend_args(backend_args)
        self.img_suffix = img_suffix
        self.seg_map_suffix = seg_map_suffix
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self.backend_args = dict(backend_args) if backend_args else None
        # Load lazily here: the label map must exist before the data list is built.
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(data_prefix),
            filter_cfg=filter_cfg,
            indices=indices,
            serialize_data=serialize_data,
            pipeline=pipeline,
            test_mode=test_mode,
            lazy_init=True,
            max_refetch=max_refetch,
            skip_corrupt=skip_corrupt,
        )
        self.label_map = self.get_label_map(self._metainfo.get("classes"))
        self._metainfo.update(label_map=self.label_map, reduce_zero_label=reduce_zero_label)
        self._metainfo["palette"] = self._update_palette()
        if test_mode and self._metainfo.get("classes") is None:
            raise DataError(
                f"{type(self).__name__}: metainfo 'classes' must be given when testing "
                "(test_mode=True), e.g. metainfo=dict(classes=('background', 'object'))"
            )
        if not lazy_init:
            self.full_init()

    # ------------------------------------------------------------------ classes
    @classmethod
    def get_label_map(cls, new_classes: Sequence[str] | None = None) -> dict[int, int] | None:
        """``{old id: new id}`` when ``new_classes`` differ from ``METAINFO['classes']``.

        Classes left out map to 255 (ignored); None when nothing changes or either list
        is missing.
        """
        old_classes = cls.METAINFO.get("classes")
        if new_classes is None or old_classes is None or list(new_classes) == list(old_classes):
            return None
        unknown = [c for c in new_classes if c not in old_classes]
        if unknown:
            hint = did_you_mean(str(unknown[0]), list(old_classes))
            raise DataError(
                f"{cls.__name__}: metainfo classes {unknown} are not among its "
                f"{len(old_classes)} classes, so no label map can be built.{hint} Valid "
                f"classes: {_listed(old_classes)}. A subset of them selects classes; for other "
                "classes write a dataset class with its own METAINFO"
            )
        new = list(new_classes)
        return {i: new.index(c) if c in new else IGNORE_LABEL for i, c in enumerate(old_classes)}

    def _update_palette(self) -> list:
        """The palette matching ``classes``: as given, the label-map subset, or a fixed
        random one (seed 42, leaving the global NumPy generator untouched)."""
        palette = self._metainfo.get("palette") or []
        classes = self._metainfo.get("classes") or []
        if len(palette) == len(classes):
            return palette
        if len(palette) == 0:
            return np.random.RandomState(42).randint(0, 255, size=(len(classes), 3)).tolist()
        if len(palette) >= len(classes) and self.label_map is not None:
            ordered = sorted(self.label_map.items(), key=lambda item: item[1])
            subset = [palette[old] for old, new in ordered if new != IGNORE_LABEL]
            return type(palette)(subset)
        raise DataError(
            f"{type(self).__name__}: metainfo has {len(palette)} palette colours for "
            f"{len(classes)} classes {_listed(classes)}; give one [r, g, b] per class in the "
            "same order (metainfo=dict(classes=..., palette=[[r, g, b], ...])) or leave "
            "palette unset for a fixed random one"
        )

    # ------------------------------------------------------------------ loading
    def load_data_list(self) -> list[dict]:
        img_dir = self.data_prefix.get("img_path") or ""
        ann_dir = self.data_prefix.get("seg_map_path")
        if self.ann_file and not os.path.isdir(self.ann_file):
            stems = self._read_ann_file(img_dir)
            pairs = [(stem + self.img_suffix, stem + self.seg_map_suffix) for stem in stems]
        else:
            pairs = self._scan(img_dir, ann_dir)
        data_list = []
        for img_rel, seg_rel in pairs:
            info = {"img_path": os.path.join(img_dir, img_rel)}
            if ann_dir is not None:
                info["seg_map_path"] = os.path.join(ann_dir, seg_rel)
            info.update(
                label_map=self.label_map, reduce_zero_label=self.reduce_zero_label, seg_fields=[]
            )
            data_list.append(info)
        if ann_dir is not None:
            self._check_masks(data_list, img_dir, ann_dir)
        return data_list

    def _layout(self) -> str:
        return self.LAYOUT.format(img_suffix=self.img_suffix, seg_map_suffix=self.seg_map_suffix)

    def _read_ann_file(self, img_dir: str) -> list[str]:
        if not os.path.isdir(img_dir):
            raise FileNotFoundError(
                f"{type(self).__name__}: image folder {img_dir!r} does not exist (expected "
                f"layout: {self._layout()}). Check data_root and data_prefix"
            )
        if not os.path.isfile(self.ann_file):
            raise FileNotFoundError(
                f"{type(self).__name__}: ann_file {self.ann_file!r} not found; it lists one "
                f"image name per line without suffix, the images being "
                f"{os.path.join(img_dir, '<name>' + self.img_suffix)!r} (expected layout: "
                f"{self._layout()})"
            )
        return [line.strip() for line in list_from_file(self.ann_file, "ann_file")]

    def _scan(self, img_dir: str, ann_dir: str | None) -> list[tuple[str, str]]:
        """``(image, mask)`` paths relative to their folders, sorted by image path."""
        masks = f" with masks in {ann_dir}/<same name>{self.seg_map_suffix}" if ann_dir else ""
        where = f"{img_dir}/**/*{self.img_suffix}{masks}"
        if not img_dir:
            raise FileNotFoundError(
                f"{type(self).__name__}: no image folder given; set data_root and "
                f"data_prefix=dict(img_path=..., seg_map_path=...) (usual layout: {self._layout()})"
            )
        if not os.path.isdir(img_dir):
            raise FileNotFoundError(
                f"{type(self).__name__}: image folder {img_dir!r} does not exist; expected "
                f"{where} (usual layout: {self._layout()}). Check data_root and data_prefix"
            )
        found = scan_files(img_dir, self.img_suffix)
        if not found:
            raise FileNotFoundError(
                f"{type(self).__name__}: no file ending with {self.img_suffix!r} in "
                f"{img_dir!r}; expected {where}. Check img_suffix and data_prefix"
            )
        pairs = [(rel, rel[: -len(self.img_suffix)] + self.seg_map_suffix) for rel in found]
        return sorted(pairs, key=lambda pair: os.path.join(img_dir, pair[0]))

    def _check_masks(self, data_list: list[dict], img_dir: str, ann_dir: str) -> None:
        missing = [d for d in data_list if not os.path.isfile(d["seg_map_path"])]
        if not missing:
            return
        first = missing[0]
        raise DataError(
            f"{type(self).__name__}: {len(missing)} of {len(data_list)} images have no mask, "
            f"e.g. image {first['img_path']!r} has no mask {first['seg_map_path']!r}. Each "
            f"image in {img_dir!r} needs a mask of the same name ending with "
            f"{self.seg_map_suffix!r} in {ann_dir!r} (convert the masks first, or leave "
            "seg_map_path out of data_prefix to load images only)"
        )


def _listed(names: Sequence[str], limit: int = 20) -> str:
    """Class names for an error message, the first ``limit`` of them."""
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    return f"({shown}{', ...' if len(names) > limit else ''})"


def scan_files(root: str, suffix: str) -> list[str]:
    """Paths (relative to ``root``) of the non-hidden files under ``root`` whose name ends
    with ``suffix``, recursively, as MMEngine's ``list_dir_or_file`` finds them."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root)
        for name in files:
            if name.endswith(suffix) and not name.startswith("."):
                found.append(name if rel == "." else os.path.join(rel, name))
    return found


def check_seg_kwargs(cls: type, kwargs: dict) -> None:
    """Reject arguments ``BaseSegDataset`` lacks, naming the closest valid ones; subclasses
    taking ``**kwargs`` call this so that a typo fails like a registry build does."""
    check_arguments(BaseSegDataset, kwargs, cls.__name__, "")


__all__ = ["BaseSegDataset", "IGNORE_LABEL", "check_seg_kwargs", "scan_files"]
