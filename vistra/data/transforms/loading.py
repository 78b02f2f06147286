"""Loading transforms: ``LoadImageFromFile`` (MMCV) and ``LoadAnnotations`` (MMSegmentation)."""

from __future__ import annotations

import numpy as np

from vistra.data.errors import DataError
from vistra.data.image_io import COLOR_FLAGS, DECODE_BACKENDS, check_backend_args, imread
from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import choose
from vistra.registry import TRANSFORMS

PALETTE_HINT = (
    "; a palette PNG (as VOC's) keeps its class indices only with "
    "LoadAnnotations(imdecode_backend='pillow'), the default"
)


@TRANSFORMS.register_module()
class LoadImageFromFile(BaseTransform):
    """Read ``results['img_path']`` into ``img`` (uint8 BGR), ``img_shape`` and ``ori_shape``.

    Decoding as :mod:`vistra.data.image_io` describes: Pillow, with plain JPEGs decoded by
    libjpeg-turbo (simplejpeg) for the 'cv2' and 'turbojpeg' backends, the same pixels.
    ``ignore_empty=True`` drops a sample whose file is missing or unreadable (the dataset
    then draws another) instead of failing. ``file_client_args`` is MMCV's deprecated
    spelling of ``backend_args``.
    """

    def __init__(
        self,
        to_float32: bool = False,
        color_type: str = "color",
        imdecode_backend: str = "cv2",
        file_client_args: dict | None = None,
        ignore_empty: bool = False,
        *,
        backend_args: dict | None = None,
    ) -> None:
        self.to_float32 = to_float32
        self.color_type = choose(color_type, COLOR_FLAGS, "color_type")
        self.imdecode_backend = choose(imdecode_backend, DECODE_BACKENDS, "imdecode_backend")
        check_backend_args(file_client_args, "file_client_args")
        check_backend_args(backend_args)
        self.ignore_empty = ignore_empty
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict | None:
        if "img_path" not in results:
            raise KeyError(
                f"LoadImageFromFile needs 'img_path' in the sample; got keys {sorted(results)}"
            )
        path = results["img_path"]
        try:
            img = imread(path, self.color_type, backend=self.imdecode_backend)
        except (OSError, ValueError):
            if self.ignore_empty:
                return None
            raise
        if self.to_float32:
            img = img.astype(np.float32)
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["ori_shape"] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadAnnotations(BaseTransform):
    """Read ``results['seg_map_path']`` into ``gt_seg_map`` (uint8 label ids) (MMSegmentation).

    ``reduce_zero_label`` maps label 0 to 255 (ignored) and every other label ``x`` to
    ``x - 1``; when None it follows the dataset's ``results['reduce_zero_label']``, and when
    set it must agree with it. A ``results['label_map']`` dict ``{old: new}`` is applied
    afterwards. The key is appended to ``seg_fields`` so geometric transforms follow it.
    """

    def __init__(
        self,
        reduce_zero_label: bool | None = None,
        backend_args: dict | None = None,
        imdecode_backend: str = "pillow",
    ) -> None:
        self.reduce_zero_label = reduce_zero_label
        check_backend_args(backend_args)
        self.backend_args = backend_args
        self.imdecode_backend = choose(imdecode_backend, DECODE_BACKENDS, "imdecode_backend")

    def transform(self, results: dict) -> dict:
        if "seg_map_path" not in results:
            raise KeyError(
                f"LoadAnnotations needs 'seg_map_path' in the sample; got keys {sorted(results)}"
            )
        path = results["seg_map_path"]
        seg = np.squeeze(imread(path, "unchanged", backend=self.imdecode_backend))
        hint = "" if self.imdecode_backend == "pillow" else PALETTE_HINT
        seg = one_channel(seg, path, hint)
        if seg.dtype != np.uint8:
            seg = seg.astype(np.uint8)
        reduce = self._reduce_zero_label(results)
        if reduce:
            seg = reduce_zero_label(seg)
        label_map = results.get("label_map")
        if label_map:
            seg = apply_label_map(seg, label_map)
        results["gt_seg_map"] = seg
        results.setdefault("seg_fields", [])
        if "gt_seg_map" not in results["seg_fields"]:
            results["seg_fields"].append("gt_seg_map")
        return results

    def _reduce_zero_label(self, results: dict) -> bool:
        from_dataset = results.get("reduce_zero_label")
        if self.reduce_zero_label is None:
            return bool(from_dataset)
        if from_dataset is not None and bool(from_dataset) != bool(self.reduce_zero_label):
            raise DataError(
                f"LoadAnnotations(reduce_zero_label={self.reduce_zero_label}) in the pipeline "
                f"disagrees with the dataset's reduce_zero_label={from_dataset} (mask "
                f"{results['seg_map_path']!r}); set it in one place: on the dataset "
                "(dataset=dict(..., reduce_zero_label=True or False)), with a plain "
                "dict(type='LoadAnnotations') in the pipeline"
            )
        return bool(self.reduce_zero_label)


def one_channel(seg: np.ndarray, path: str, hint: str = "") -> np.ndarray:
    """A mask as one channel of class indices: a multi-channel mask whose colour channels
    are all equal (a grey image saved as RGB, with or without alpha) gives its first
    channel; a colour mask is a :class:`DataError` naming the file."""
    if seg.ndim == 2:
        return seg
    if seg.ndim == 3 and seg.shape[2] in (2, 3, 4):
        colour = seg[..., :-1] if seg.shape[2] in (2, 4) else seg  # drop alpha
        if (colour == colour[..., :1]).all():
            return colour[..., 0]
        raise DataError(
            f"mask {path!r} is a colour image ({seg.shape[2]} channels whose values differ); "
            "masks must be single-channel PNGs of class indices (0, 1, ... in the order of "
            "the dataset's classes, 255 = ignored). Convert the colour masks to class-index "
            f"PNGs first (each colour -> its class index){hint}"
        )
    raise DataError(
        f"mask {path!r} has shape {seg.shape}; expected a single-channel image (H, W) of "
        "class indices"
    )


def reduce_zero_label(seg: np.ndarray) -> np.ndarray:
    """0 -> 255 (ignore), x -> x - 1 (and 255 stays 255)."""
    lut = np.arange(256, dtype=np.int64) - 1
    lut[0] = 255
    lut[255] = 255
    return lut.astype(np.uint8)[seg]


def apply_label_map(seg: np.ndarray, label_map: dict[int, int]) -> np.ndarray:
    """Replace every ``old`` id by ``new``, all at once (a chain old->new->newer is not followed)."""
    lut = np.arange(256, dtype=np.int64)
    for old, new in label_map.items():
        lut[int(old)] = int(new)
    return lut.astype(np.uint8)[seg]
