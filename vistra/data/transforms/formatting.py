"""Packing transforms: turn a results dict into ``{'inputs': tensor, 'data_samples': DataSample}``.

``PackInputs`` (MMPretrain; ``PackClsInputs`` is its 1.0rc name) and ``PackSegInputs``
(MMSegmentation). Images become ``(C, H, W)`` tensors of the image's own dtype (uint8
normally); normalisation happens later, on the device, in the data preprocessor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from vistra.data.structures import DataSample, PixelData
from vistra.data.transforms.base import BaseTransform
from vistra.registry import TRANSFORMS


def to_tensor(value: Any) -> torch.Tensor:
    """numpy arrays, tensors, sequences and numbers -> tensor (numpy memory is shared)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (Sequence, int, float)) and not isinstance(value, str):
        return torch.tensor(value)
    raise TypeError(f"cannot convert {type(value).__name__} to a tensor")


def image_to_tensor(img: np.ndarray | Image.Image | torch.Tensor) -> torch.Tensor:
    """``(H, W)`` / ``(H, W, C)`` array -> ``(C, H, W)`` tensor; tensors pass through;
    arrays of other ranks (e.g. video clips) are converted without permuting."""
    if isinstance(img, torch.Tensor):
        return img
    if isinstance(img, Image.Image):
        img = np.asarray(img)
    if not isinstance(img, np.ndarray):
        raise TypeError(f"unsupported image type {type(img).__name__}; expected a numpy array")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim == 3:
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    return torch.from_numpy(np.ascontiguousarray(img))


@TRANSFORMS.register_module(name=["PackInputs", "PackClsInputs"])
class PackInputs(BaseTransform):
    """Pack ``results[input_key]`` into ``inputs`` and labels/meta into a :class:`DataSample`.

    ``gt_label``/``gt_score``/``mask`` become fields, ``algorithm_keys`` are copied as
    fields, ``meta_keys`` (those present) as metainfo. A list input (several views)
    becomes a list of tensors.
    """

    def __init__(
        self,
        input_key: str = "img",
        algorithm_keys: Sequence[str] = (),
        meta_keys: Sequence[str] = (
            "sample_idx",
            "img_path",
            "ori_shape",
            "img_shape",
            "scale_factor",
            "flip",
            "flip_direction",
        ),
    ) -> None:
        self.input_key = input_key
        self.algorithm_keys = tuple(algorithm_keys)
        self.meta_keys = tuple(meta_keys)

    @staticmethod
    def format_input(value: Any) -> Any:
        if isinstance(value, list):
            return [PackInputs.format_input(v) for v in value]
        return image_to_tensor(value)

    def transform(self, results: dict) -> dict:
        packed: dict[str, Any] = {}
        if self.input_key in results:
            packed["inputs"] = self.format_input(results[self.input_key])
        sample = DataSample()
        if "gt_label" in results:
            sample.set_gt_label(results["gt_label"])
        if "gt_score" in results:
            sample.set_gt_score(results["gt_score"])
        if "mask" in results:
            sample.mask = to_tensor(results["mask"])
        for key in self.algorithm_keys:
            if key in results:
                setattr(sample, key, results[key])
        sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        packed["data_samples"] = sample
        return packed

    def __repr__(self) -> str:
        return (
            f"PackInputs(input_key={self.input_key!r}, algorithm_keys={self.algorithm_keys}, "
            f"meta_keys={self.meta_keys})"
        )


@TRANSFORMS.register_module()
class PackSegInputs(BaseTransform):
    """Pack ``img`` into ``inputs`` and ``gt_seg_map`` into ``gt_sem_seg`` (int64
    ``(1, H, W)`` :class:`PixelData`), plus ``gt_edge_map``/``gt_depth_map`` when present,
    and the ``meta_keys`` present as metainfo."""

    def __init__(
        self,
        meta_keys: Sequence[str] = (
            "img_path",
            "seg_map_path",
            "ori_shape",
            "img_shape",
            "pad_shape",
            "scale_factor",
            "flip",
            "flip_direction",
            "reduce_zero_label",
            "sample_idx",  # not in MMSeg's list; names outputs of in-memory samples
        ),
    ) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        packed: dict[str, Any] = {}
        if "img" in results:
            packed["inputs"] = image_to_tensor(results["img"])
        sample = DataSample()
        if "gt_seg_map" in results:
            seg = np.asarray(results["gt_seg_map"])
            if seg.ndim == 2:
                seg = seg[None]
            sample.gt_sem_seg = PixelData(to_tensor(seg.astype(np.int64)))
        if "gt_edge_map" in results:
            edge = np.asarray(results["gt_edge_map"])[None].astype(np.int64)
            sample.gt_edge_map = PixelData(to_tensor(edge))
        if "gt_depth_map" in results:
            depth = np.asarray(results["gt_depth_map"])[None].astype(np.float32)
            sample.gt_depth_map = PixelData(to_tensor(depth))
        sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        packed["data_samples"] = sample
        return packed

    def __repr__(self) -> str:
        return f"PackSegInputs(meta_keys={self.meta_keys})"
