"""See what a data pipeline makes of the samples: each transform's output drawn as a panel.

:class:`RecordingPipeline` stands in for a dataset's pipeline and keeps a :class:`Step`
(the image or views, and the segmentation map) after every transform; :func:`draw_sample`
lays the steps a mode asks for out side by side (``original``: the loaded image,
``transformed``: what the model receives, ``concat``: both, ``pipeline``: every step),
one column per step, views (self-supervised pipelines) and the ground-truth overlay
(segmentation) or the masked patches (masked image modelling) stacked in the column, the
class label written underneath.
Pure numpy and Pillow (``vistra.visualization.drawing``): no window, no pyplot.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from vistra.visualization.drawing import (
    as_label_map,
    draw_region_names,
    draw_text_block,
    overlay_sem_seg,
    resize_image,
    resize_label_map,
)

MODES = ("original", "transformed", "concat", "pipeline")
MIN_TILE = 128  # small images are enlarged to this short edge (unless a rescale factor is set)
GAP = 4  # white pixels between columns and between the tiles of a column
TITLE_HEIGHT = 36  # the bar above each column: the step's name and the image's size
LABEL_HEIGHT = 24  # the strip under the grid with the class label
FONT_SIZE = 12
SEG_ALPHA = 0.5
MASK_GREY = 128


@dataclass
class Step:
    """The sample after one transform: its views (RGB uint8) and segmentation map."""

    name: str
    views: list[np.ndarray]
    seg_map: np.ndarray | None = None
    mask: np.ndarray | None = None  # a masked-image-modelling patch mask (1: masked)


@dataclass
class Recorded:
    """Everything kept of one sample: its steps, its packed output and where it came from."""

    steps: list[Step] = field(default_factory=list)
    img_path: str | None = None
    sample_idx: int | None = None


class RecordingPipeline:
    """Runs ``transforms`` in order, recording a :class:`Step` after each (and before the
    first, when the sample already holds an image: in-memory datasets)."""

    def __init__(self, transforms: Sequence[Any], bgr: bool) -> None:
        self.transforms = list(transforms)
        self.bgr = bgr
        self.last = Recorded()

    def __call__(self, results: dict) -> Any:
        record = Recorded(img_path=results.get("img_path"), sample_idx=results.get("sample_idx"))
        self.last = record
        self._keep(record, "Original", results)
        for transform in self.transforms:
            results = transform(results)
            if results is None:
                return None
            self._keep(record, type(transform).__name__, results)
        return results

    def _keep(self, record: Recorded, name: str, results: Any) -> None:
        step = snapshot(name, results, self.bgr)
        if step is not None:
            record.steps.append(step)


def record_pipelines(dataset: Any, bgr: bool) -> list[RecordingPipeline]:
    """Replace the pipeline of ``dataset`` (or, for wrappers, of each dataset inside it)
    by a recording one; returns them."""
    recorders = []
    for inner in _inner_datasets(dataset):
        recorder = RecordingPipeline(getattr(inner.pipeline, "transforms", [inner.pipeline]), bgr)
        inner.pipeline = recorder
        recorders.append(recorder)
    if not recorders:
        raise TypeError(f"{type(dataset).__name__} has no pipeline to browse")
    return recorders


def _inner_datasets(dataset: Any) -> Iterator[Any]:
    if hasattr(dataset, "datasets"):  # ConcatDataset
        for inner in dataset.datasets:
            yield from _inner_datasets(inner)
    elif hasattr(dataset, "dataset") and not hasattr(dataset, "pipeline"):  # RepeatDataset
        yield from _inner_datasets(dataset.dataset)
    elif hasattr(dataset, "pipeline"):
        yield dataset


# ----------------------------------------------------------------------------- snapshots
def snapshot(name: str, results: Any, bgr: bool) -> Step | None:
    """The images in ``results`` (``img`` before packing, ``inputs`` after), as RGB uint8;
    None when it holds none yet (before ``LoadImageFromFile``)."""
    if not isinstance(results, dict):
        return None
    images = results.get("img", results.get("inputs"))
    if images is None:
        return None
    views = [v for v in (to_rgb(x, bgr) for x in _as_list(images)) if v is not None]
    if not views:
        return None
    return Step(name, views, _seg_map(results), _mim_mask(results))


def _as_list(images: Any) -> list:
    return list(images) if isinstance(images, (list, tuple)) else [images]


def _seg_map(results: dict) -> np.ndarray | None:
    if results.get("gt_seg_map") is not None:
        return as_label_map(np.asarray(results["gt_seg_map"]), "gt_seg_map")
    sample = results.get("data_samples")
    if sample is not None and "gt_sem_seg" in sample:
        return as_label_map(sample.gt_sem_seg.data, "gt_sem_seg")
    return None


def _mim_mask(results: dict) -> np.ndarray | None:
    mask = results.get("mask")
    sample = results.get("data_samples")
    if mask is None and sample is not None and "mask" in sample:
        mask = sample.mask
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = None if mask is None else np.asarray(mask)
    return mask if mask is not None and mask.ndim == 2 else None


def to_rgb(image: Any, bgr: bool) -> np.ndarray | None:
    """An image of the pipeline (HWC array, CHW tensor, float or uint8) as RGB uint8 HWC;
    None for what is not one image (a video clip)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        if image.ndim == 3:
            image = image.transpose(1, 2, 0)  # packed tensors are CHW
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        return None
    if image.dtype != np.uint8:
        image = _float_to_uint8(image.astype(np.float64))
    image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1] if bgr else image)


def _float_to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 255] values as they are, [0, 1] scaled up; anything else (normalised
    images) stretched to the full range, so that it stays visible."""
    low, high = float(np.nanmin(image)), float(np.nanmax(image))
    if 0.0 <= low and high <= 1.0:
        image = image * 255.0
    elif low < 0.0 or high > 255.0:
        image = (image - low) / max(high - low, 1e-12) * 255.0
    return np.round(np.nan_to_num(image)).clip(0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- drawing
def steps_for_mode(steps: list[Step], mode: str) -> list[Step]:
    if mode == "original":
        return steps[:1]
    if mode == "transformed":
        return [replace(steps[-1], name="transformed")]
    if mode == "concat":
        return [replace(steps[0], name="original"), replace(steps[-1], name="transformed")]
    if mode == "pipeline":
        return steps
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def draw_sample(
    steps: Sequence[Step],
    label_lines: Sequence[str] = (),
    palette: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    rescale_factor: float | None = None,
) -> np.ndarray:
    """The steps as one RGB image: a titled column each (see the module doc)."""
    columns = [_column(s, palette, names, rescale_factor) for s in steps]
    height = max(c.shape[0] for c in columns)
    width = sum(c.shape[1] for c in columns) + GAP * (len(columns) - 1)
    canvas = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for column in columns:
        canvas[: column.shape[0], x : x + column.shape[1]] = column
        x += column.shape[1] + GAP
    if label_lines:
        canvas = np.concatenate([canvas, _text_strip(label_lines, width, LABEL_HEIGHT)])
    return canvas


def _column(
    step: Step,
    palette: np.ndarray | None,
    names: Sequence[str] | None,
    rescale_factor: float | None,
) -> np.ndarray:
    tiles = []
    for view in step.views:
        tile = _scaled(view, rescale_factor)
        tiles.append(tile)
        if step.seg_map is not None and palette is not None:
            tiles.append(_overlay(tile, step.seg_map, palette, names))
        if step.mask is not None and len(tiles) == 1:  # the mask is of the first view
            tiles.append(_shade_masked(tile, step.mask))
    width = max(t.shape[1] for t in tiles)
    h, w = step.views[0].shape[:2]
    size = f"{h}x{w}" if len(step.views) == 1 else f"{len(step.views)} views, {h}x{w}"
    parts = [_text_strip([step.name, size], width, TITLE_HEIGHT)]
    for i, tile in enumerate(tiles):
        if i:
            parts.append(np.full((GAP, width, 3), 255, np.uint8))
        parts.append(_pad_width(tile, width))
    return np.concatenate(parts)


def _scaled(image: np.ndarray, rescale_factor: float | None) -> np.ndarray:
    if rescale_factor is not None:
        return resize_image(image, scale=rescale_factor)
    return resize_image(image, min_short_edge=MIN_TILE)


def _overlay(
    tile: np.ndarray, seg_map: np.ndarray, palette: np.ndarray, names: Sequence[str] | None
) -> np.ndarray:
    label_map = resize_label_map(seg_map, *tile.shape[:2])
    drawn = overlay_sem_seg(tile, label_map, palette, SEG_ALPHA)
    return draw_region_names(drawn, label_map, names) if names else drawn


def _shade_masked(tile: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The masked patches greyed out: what a masked-image model does not see."""
    masked = resize_label_map(mask.astype(np.int64), *tile.shape[:2]) > 0
    out = tile.copy()
    out[masked] = np.round(0.3 * tile[masked] + 0.7 * MASK_GREY).astype(np.uint8)
    return out


def _pad_width(tile: np.ndarray, width: int) -> np.ndarray:
    if tile.shape[1] == width:
        return tile
    pad = np.full((tile.shape[0], width - tile.shape[1], 3), 255, np.uint8)
    return np.concatenate([tile, pad], axis=1)


def _text_strip(lines: Sequence[str], width: int, height: int) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    return draw_text_block(
        strip,
        list(lines),
        (0, 0),
        font_size=FONT_SIZE,
        text_color=(0, 0, 0),
        box_color=(255, 255, 255),
        box_opacity=1.0,
    )
