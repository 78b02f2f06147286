"""Transforms of MMSelfSup's pretext-task pipelines: ``RotationWithLabels`` (RotationPred),
``RandomPatchWithLabels`` (RelativeLoc) and MMSelfSup 1.x's ``RandomCrop`` (``size``;
registered for scope ``mmselfsup``).

Both label transforms replace ``img`` by a list of views (which ``PackSelfSupInputs``
packs as a list of tensors and the model's data preprocessor regroups) and add the labels
the configs pack as ``pseudo_label_keys``. Randomness comes from numpy's global generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.geometric import RandomCrop
from vistra.registry import TRANSFORMS

PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


def rotate_clockwise(img: np.ndarray, quarter_turns: int) -> np.ndarray:
    """``img`` turned ``90 * quarter_turns`` degrees clockwise about its centre, kept at
    its own ``(H, W)`` (MMCV's ``imrotate`` without ``auto_bound``): a square image is
    rotated exactly; an oblong one after a quarter turn is centred on a zero canvas of the
    original size, cropping what does not fit."""
    turned = np.rot90(img, k=-quarter_turns)
    h, w = img.shape[:2]
    if turned.shape[:2] == (h, w):
        return np.ascontiguousarray(turned)
    canvas = np.zeros_like(img)
    th, tw = turned.shape[:2]
    # offsets of the turned image's centre onto the canvas's centre (negative: crop)
    dy, dx = (h - th) // 2, (w - tw) // 2
    src_y, dst_y = max(0, -dy), max(0, dy)
    src_x, dst_x = max(0, -dx), max(0, dx)
    rows, cols = min(th - src_y, h - dst_y), min(tw - src_x, w - dst_x)
    canvas[dst_y : dst_y + rows, dst_x : dst_x + cols] = turned[
        src_y : src_y + rows, src_x : src_x + cols
    ]
    return canvas


@TRANSFORMS.register_module()
class RotationWithLabels(BaseTransform):
    """``img`` -> its four rotations (0, 90, 180, 270 degrees clockwise) and
    ``rot_label = [0, 1, 2, 3]``."""

    def transform(self, results: dict) -> dict:
        img = results["img"]
        results["img"] = [rotate_clockwise(img, k) for k in range(4)]
        results["rot_label"] = np.array([0, 1, 2, 3])
        return results


def _crop(img: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """MMCV's ``imcrop`` of one box: inclusive corners clipped to the image."""
    h, w = img.shape[:2]
    x1, x2 = min(max(x1, 0), w - 1), min(max(x2, 0), w - 1)
    y1, y2 = min(max(y1, 0), h - 1), min(max(y2, 0), h - 1)
    return img[y1 : y2 + 1, x1 : x2 + 1, ...]


@TRANSFORMS.register_module()
class RandomPatchWithLabels(BaseTransform):
    """A 3 x 3 grid of jittered patches: ``img`` -> 9 views, the centre patch first, then
    the 8 neighbours in grid order, with ``patch_label = [[0, ..., 7]]``, ``patch_box``
    ``(1, 9, 4)`` and ``unpatched_img`` ``(1, H, W, C)``.

    Each grid cell (side ``H // 3``) is cut out and a random window 21 pixels smaller
    than the cell is taken from it, so neighbouring patches never touch. The cells follow
    MMSelfSup's indexing exactly (row ``i`` of the grid is used as the *x* index of the
    box), so the views equal upstream's for the same random draws.
    """

    split_per_side = 3
    patch_jitter = 21

    def _image_to_patches(self, img: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        h, w = img.shape[:2]
        h_grid, w_grid = h // self.split_per_side, w // self.split_per_side
        h_patch, w_patch = h_grid - self.patch_jitter, w_grid - self.patch_jitter
        if h_patch <= 0 or w_patch <= 0:
            side = self.split_per_side * (self.patch_jitter + 1)
            raise ValueError(
                f"RandomPatchWithLabels needs an image of at least {side} x {side} pixels "
                f"(3 cells of more than {self.patch_jitter} pixels), got {h} x {w}"
            )
        patches, boxes = [], []
        for i in range(self.split_per_side):
            for j in range(self.split_per_side):
                cell = _crop(img, i * h_grid, j * w_grid, (i + 1) * h_grid, (j + 1) * w_grid)
                ch, cw = cell.shape[:2]
                if (ch, cw) == (h_patch, w_patch):
                    ymin, xmin = 0, 0
                else:
                    ymin = np.random.randint(0, ch - h_patch + 1)
                    xmin = np.random.randint(0, cw - w_patch + 1)
                patches.append(_crop(cell, xmin, ymin, xmin + w_patch - 1, ymin + h_patch - 1))
                boxes.append(
                    np.array([
                        i * h_grid + xmin,
                        j * w_grid + ymin,
                        i * h_grid + xmin + w_patch - 1,
                        j * w_grid + ymin + h_patch - 1,
                    ])
                )  # fmt: skip
        return patches, boxes

    def transform(self, results: dict) -> dict:
        img = results["img"]
        patches, boxes = self._image_to_patches(img)
        centre = len(patches) // 2
        results["img"] = [patches[centre]] + [p for k, p in enumerate(patches) if k != centre]
        results["patch_label"] = np.arange(8)[None]
        results["patch_box"] = np.stack(boxes, axis=0)[None]
        results["unpatched_img"] = np.expand_dims(img, axis=0)
        return results


@TRANSFORMS.register_module(name="RandomCrop", scope="mmselfsup")
class SelfSupRandomCrop(RandomCrop):
    """MMSelfSup 1.x's ``RandomCrop``: the crop side is ``size`` (an int or ``(h, w)``);
    ``padding`` first, ``pad_if_needed`` up to the crop size."""

    def __init__(
        self,
        size: int | Sequence[int],
        padding: int | Sequence[int] | None = None,
        pad_if_needed: bool = False,
        pad_val: float | Sequence[float] = 0,
        padding_mode: str = "constant",
    ) -> None:
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"RandomCrop padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}"
            )
        super().__init__(
            crop_size=size,
            padding=padding,
            pad_if_needed=pad_if_needed,
            pad_val=pad_val,
            padding_mode=padding_mode,
        )
        self.size = self.crop_size
