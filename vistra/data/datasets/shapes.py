"""Synthetic shapes datasets (classification and segmentation) and their on-disk writer.

``ShapesDataset`` / ``ShapesSegDataset`` render samples in memory with
:func:`render_shape_sample`, each on its first use (so building a dataset costs nothing
and training starts at once), and keep them: sample ``i`` of a split depends only on
``(seed, split, i)``, never on the order samples are asked for,
and the train/val/test splits draw from disjoint seed sequences, so val and test are
held out. In-memory samples already hold ``img`` (uint8 BGR), ``img_shape``,
``ori_shape`` and ``gt_label`` (classification) or ``gt_seg_map`` with
``seg_fields=['gt_seg_map']`` (segmentation): pipelines start after loading.

:func:`write_shapes_dataset` writes the very same samples as PNG files, in
CustomDataset/ImageNet layout (``train/<class>/*.png`` + ``meta/train.txt``) or in
MMSegmentation layout (``img_dir/train/*.png`` + ``ann_dir/train/*.png``). Passing
``data_root`` to a shapes dataset reads such a folder instead of rendering (then the
pipeline must start with ``LoadImageFromFile`` (and ``LoadAnnotations``)).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from vistra.data.datasets.base import BaseDataset, list_from_file
from vistra.data.datasets.shapes_render import SHAPE_NAMES, render_shape_sample, sample_rng
from vistra.data.image_io import imwrite
from vistra.data.transforms.functional import choose
from vistra.registry import DATASETS

SPLITS = {"train": 0, "val": 1, "test": 2}
_INDEX = "shape_index"  # an in-memory sample's entry before it is rendered
# Background black, then well-separated colours for the ten shape kinds (RGB).
PALETTE = (
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 190),
)


def shape_classes(num_classes: int) -> tuple[str, ...]:
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"num_classes must be in [1, {len(SHAPE_NAMES)}], got {num_classes}")
    return SHAPE_NAMES[:num_classes]


def render_split(
    split: str, index: int, seed: int, img_size: int, num_classes: int
) -> tuple[np.ndarray, int, np.ndarray]:
    """Sample ``index`` of ``split``: what both the datasets and the writer use."""
    split_id = SPLITS[choose(split, tuple(SPLITS), "split")]
    return render_shape_sample(sample_rng(seed, split_id, index), img_size, num_classes)


class _ShapesBase(BaseDataset):
    """Shared arguments and the render-or-read switch."""

    def __init__(
        self,
        num_samples: int = 1000,
        num_classes: int = 6,
        img_size: int = 64,
        seed: int = 0,
        split: str = "train",
        pipeline: list | tuple = (),
        test_mode: bool = False,
        data_root: str | None = None,
        metainfo: dict | None = None,
        **kwargs,
    ) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.img_size = img_size
        self.seed = seed
        self.split = choose(split, tuple(SPLITS), f"{type(self).__name__} split")
        self._rendered: dict[int, dict] = {}  # index -> rendered sample (each worker its own)
        info = self._default_metainfo(shape_classes(num_classes))
        info.update(metainfo or {})
        super().__init__(
            ann_file="",
            metainfo=info,
            data_root=data_root or "",
            data_prefix="",
            pipeline=pipeline,
            test_mode=test_mode,
            **kwargs,
        )

    def _default_metainfo(self, names: tuple[str, ...]) -> dict:
        return {"classes": names}

    def load_data_list(self) -> list[dict]:
        if self.data_root:
            return self._read_disk()
        # rendered on first use (get_data_info), so that building the dataset costs nothing
        # and training starts at once; a sample depends only on (seed, split, index)
        return [{_INDEX: i} for i in range(self.num_samples)]

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        if _INDEX not in info:
            return info
        index = info.pop(_INDEX)
        if index not in self._rendered:
            img, label, mask = render_split(
                self.split, index, self.seed, self.img_size, self.num_classes
            )
            self._rendered[index] = self._in_memory(img, label, mask)
        size = (self.img_size, self.img_size)
        sample = copy.deepcopy(self._rendered[index])  # pipelines may change it in place
        return info | sample | {"img_shape": size, "ori_shape": size}

    def _in_memory(self, img: np.ndarray, label: int, mask: np.ndarray) -> dict:
        raise NotImplementedError

    def _read_disk(self) -> list[dict]:
        raise NotImplementedError

    def _missing(self, path: str, task: str) -> FileNotFoundError:
        return FileNotFoundError(
            f"{type(self).__name__}: {path!r} not found. Write the data first with "
            f"`python tools/dataset_converters/make_shapes.py --out {self.data_root} --task {task}`,"
            " or leave data_root=None to render samples in memory"
        )


@DATASETS.register_module()
class ShapesDataset(_ShapesBase):
    """Classify the main shape of synthetic images (``num_classes`` of ten kinds)."""

    def _in_memory(self, img: np.ndarray, label: int, mask: np.ndarray) -> dict:
        return {"img": img, "gt_label": label}

    def _read_disk(self) -> list[dict]:
        ann = os.path.join(self.data_root, "meta", f"{self.split}.txt")
        if not os.path.isfile(ann):
            raise self._missing(ann, "cls")
        prefix = os.path.join(self.data_root, self.split)
        out = []
        for line in list_from_file(ann, "shapes annotation file"):
            path, label = line.rsplit(" ", 1)
            out.append({"img_path": os.path.join(prefix, path), "gt_label": int(label)})
        return out


@DATASETS.register_module()
class ShapesSegDataset(_ShapesBase):
    """Segment synthetic shapes: label 0 is background, 1..K the shape kinds."""

    def _default_metainfo(self, names: tuple[str, ...]) -> dict:
        classes = ("background", *names)
        return {"classes": classes, "palette": [list(c) for c in PALETTE[: len(classes)]]}

    def _in_memory(self, img: np.ndarray, label: int, mask: np.ndarray) -> dict:
        return {
            "img": img,
            "gt_seg_map": mask,
            "seg_fields": ["gt_seg_map"],
            "reduce_zero_label": False,
        }

    def _read_disk(self) -> list[dict]:
        img_dir = os.path.join(self.data_root, "img_dir", self.split)
        ann_dir = os.path.join(self.data_root, "ann_dir", self.split)
        if not os.path.isdir(img_dir):
            raise self._missing(img_dir, "seg")
        out = []
        for name in sorted(n for n in os.listdir(img_dir) if n.endswith(".png")):
            out.append(
                {
                    "img_path": os.path.join(img_dir, name),
                    "seg_map_path": os.path.join(ann_dir, name),
                    "seg_fields": [],
                    "reduce_zero_label": False,
                    "label_map": None,
                }
            )
        return out


# --------------------------------------------------------------------------- writer
def write_shapes_split(
    out_dir: str | os.PathLike,
    task: str,
    split: str,
    num_samples: int,
    img_size: int = 64,
    seed: int = 0,
    num_classes: int = 6,
) -> int:
    """Write one split to disk (see the module docstring for layouts); returns its size."""
    out = Path(out_dir)
    choose(task, ("cls", "seg"), "task")
    names = shape_classes(num_classes)
    lines = []
    for i in range(num_samples):
        img, label, mask = render_split(split, i, seed, img_size, num_classes)
        if task == "cls":
            rel = f"{names[label]}/{i:06d}.png"
            imwrite(img, out / split / rel)
            lines.append(f"{rel} {label}")
        else:
            imwrite(img, out / "img_dir" / split / f"{i:06d}.png")
            imwrite(mask, out / "ann_dir" / split / f"{i:06d}.png")
    if task == "cls":
        (out / "meta").mkdir(parents=True, exist_ok=True)
        (out / "meta" / f"{split}.txt").write_text("".join(f"{x}\n" for x in lines))
        for name in names:  # so that every class folder exists, even if a split misses one
            (out / split / name).mkdir(parents=True, exist_ok=True)
    return num_samples


def write_shapes_dataset(
    out_dir: str | os.PathLike,
    task: str = "cls",
    num_train: int = 1000,
    num_val: int = 200,
    img_size: int = 64,
    seed: int = 0,
    num_classes: int = 6,
) -> dict[str, int]:
    """Write train and val splits plus the class list; returns ``{split: count}``."""
    counts = {
        split: write_shapes_split(out_dir, task, split, n, img_size, seed, num_classes)
        for split, n in (("train", num_train), ("val", num_val))
    }
    classes = (
        shape_classes(num_classes) if task == "cls" else ("background", *shape_classes(num_classes))
    )
    meta = Path(out_dir) / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return counts


__all__ = [
    "PALETTE",
    "SHAPE_NAMES",
    "ShapesDataset",
    "ShapesSegDataset",
    "render_shape_sample",
    "render_split",
    "write_shapes_dataset",
    "write_shapes_split",
]
