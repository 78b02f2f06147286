"""What a user hands to inference, turned into batches the model's data preprocessor takes.

Inputs: an image path (``.png``, ``.jpg``, ...), a folder (the image files below it, in
sub-folders too, sorted by path), a numpy ``(H, W, 3)`` uint8 array (BGR, as OpenMMLab treats arrays; ``(H, W)``
is grey) or a list of these. Preprocessing is the config's test pipeline (the val one
when there is none) with annotation loading dropped and its ``LoadImageFromFile`` replaced
by a loader that takes either kind of input -- prepended when the pipeline has none (the
quickstart configs render their data in memory, so their pipelines start after loading).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vistra.data.errors import DataError
from vistra.data.transforms.base import Compose
from vistra.data.transforms.loading import LoadImageFromFile
from vistra.registry import TRANSFORMS, default_scope

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_DROPPED = ("LoadAnnotations", "LoadDepthAnnotation", "LoadImageFromNDArray")
_LOADERS = ("LoadImageFromFile", "InferencerLoader")

ImageInput = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class Item:
    """One image to predict: a file path or an array, and the name outputs use."""

    source: str | np.ndarray
    name: str  # the file's path, or 'array[i]'

    @property
    def is_file(self) -> bool:
        return isinstance(self.source, str)


def collect_inputs(inputs: ImageInput | Sequence[ImageInput]) -> tuple[list[Item], bool]:
    """The images ``inputs`` names, in order, and whether it was several (a list or a
    folder) rather than one."""
    if isinstance(inputs, list | tuple):
        items: list[Item] = []
        for value in inputs:
            items.extend(_expand(value, len(items)))
        if not items:
            raise DataError("no input images: the list is empty")
        return items, True
    items = _expand(inputs, 0)
    return items, not _is_array(inputs) and Path(os.fspath(inputs)).is_dir()


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray)


def _expand(value: Any, index: int) -> list[Item]:
    if _is_array(value):
        return [Item(check_array(value, f"array[{index}]"), f"array[{index}]")]
    if not isinstance(value, str | os.PathLike):
        raise DataError(
            f"input {index}: expected an image path, a folder or a numpy array, "
            f"got {type(value).__name__}"
        )
    path = Path(os.fspath(value)).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise DataError(
                f"folder {os.fspath(value)!r} has no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        return [Item(str(p), str(p)) for p in files]
    if not path.exists():
        raise FileNotFoundError(2, "input image not found", os.fspath(value))
    if not is_image_file(path):
        raise DataError(
            f"input {os.fspath(value)!r} is not an image file (suffix {path.suffix!r}); "
            f"valid: {', '.join(IMAGE_SUFFIXES)}"
        )
    return [Item(str(path), os.fspath(value))]


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def check_array(img: np.ndarray, name: str) -> np.ndarray:
    """``img`` if it is an image array (``(H, W)`` or ``(H, W, 3)``, uint8)."""
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise DataError(
            f"{name}: expected an (H, W, 3) uint8 BGR image array, got shape "
            f"{tuple(img.shape)} dtype {img.dtype}"
        )
    return img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)


# ----------------------------------------------------------------------------- pipeline
class InferencerLoader:
    """Load a path with the config's ``LoadImageFromFile`` settings, or take an array."""

    def __init__(self, **load_args: Any) -> None:
        self.from_file = LoadImageFromFile(**load_args)

    def __call__(self, results: dict) -> dict | None:
        if "img" in results:
            img = results["img"]
            if self.from_file.to_float32:
                img = results["img"] = img.astype(np.float32)
            results["img_shape"] = img.shape[:2]
            results["ori_shape"] = img.shape[:2]
            return results
        return self.from_file(results)

    def __repr__(self) -> str:
        return f"InferencerLoader({self.from_file!r})"


def _type_name(transform: Any) -> str:
    name = str(transform.get("type", "")) if isinstance(transform, dict) else ""
    return name.rsplit(".", 1)[-1]  # 'mmseg.LoadImageFromFile' -> 'LoadImageFromFile'


def pipeline_config(cfg: Any) -> list:
    """The test pipeline (else the val one) as configured, or just the packer."""
    for key in ("test_dataloader", "val_dataloader"):
        dataset = (cfg.get(key) or {}).get("dataset") or {}
        while isinstance(dataset, dict) and "pipeline" not in dataset and "dataset" in dataset:
            dataset = dataset["dataset"]  # RepeatDataset and other wrappers
        if isinstance(dataset, dict) and dataset.get("pipeline") is not None:
            return copy.deepcopy(list(dataset["pipeline"]))
    if cfg.get("test_pipeline") is not None:
        return copy.deepcopy(list(cfg["test_pipeline"]))
    return [dict(type="PackInputs")]


def build_pipeline(cfg: Any) -> Compose:
    """The per-image preprocessing of inference (see the module doc)."""
    steps = [t for t in pipeline_config(cfg) if _type_name(t) not in _DROPPED]
    loader = None
    kept = []
    for step in steps:
        if _type_name(step) in _LOADERS:
            if loader is None:
                args = {k: v for k, v in step.items() if k != "type"}
                loader = InferencerLoader(**args)
            continue
        kept.append(step)
    with default_scope(cfg.get("default_scope")):
        built = [TRANSFORMS.build(t, key_path=f"test pipeline[{i}]") for i, t in enumerate(kept)]
    return Compose([loader or InferencerLoader(), *built])


def first_results(item: Item) -> dict:
    """The results dict a pipeline starts from."""
    if item.is_file:
        return {"img_path": item.source}
    img = item.source
    return {"img": img, "img_shape": img.shape[:2], "ori_shape": img.shape[:2]}


def prepare(pipeline: Callable[[dict], dict | None], item: Item) -> dict:
    """One packed sample; a pipeline that drops the image is an error naming it."""
    packed = pipeline(first_results(item))
    if packed is None:
        raise DataError(f"{item.name}: the test pipeline dropped this image")
    return packed


def batches(
    pipeline: Callable[[dict], dict | None], items: Iterable[Item], batch_size: int
) -> Iterator[tuple[list[Item], dict]]:
    """``(items, collated batch)`` chunks of ``batch_size``, as a dataloader gives them."""
    from vistra.data.collate import pseudo_collate

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == batch_size:
            yield chunk, pseudo_collate([prepare(pipeline, i) for i in chunk])
            chunk = []
    if chunk:
        yield chunk, pseudo_collate([prepare(pipeline, i) for i in chunk])


def read_rgb(item: Item) -> np.ndarray:
    """The image as RGB for drawing."""
    from vistra.data.image_io import imread, swap_rb

    img = imread(item.source) if item.is_file else item.source
    return swap_rb(img)
