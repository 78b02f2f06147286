"""``PackSelfSupInputs``: MMSelfSup 1.x's packing transform.

Unlike ``PackInputs``, ``inputs`` is *always a list of views*: a single image becomes a
one-element list, the views of ``MultiView`` stay in their order. ``default_collate`` then
stacks each view into its own ``NCHW`` batch, and ``SelfSupDataPreprocessor`` gives the
model a list of normalised batches, one per view (MAE reads the first, SimCLR both).

The data sample carries ``meta_keys`` as metainfo and ``algorithm_keys`` as fields under
MMSelfSup's names and layout: ``gt_label``, ``pred_label``, ``sample_idx`` and ``mask``,
each an element whose ``value`` is the tensor (``data_sample.mask.value``), as MMSelfSup's
``LabelData(value=...)``/``InstanceData(value=...)``; ``pseudo_label_keys`` become the
tensor attributes of one ``pseudo_label`` element.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vistra.data.structures import DataSample
from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.formatting import to_tensor
from vistra.registry import TRANSFORMS

#: The algorithm keys MMSelfSup's ``SelfSupDataSample`` has a field for.
ALGORITHM_KEYS = ("gt_label", "pred_label", "sample_idx", "mask")


class ValueData:
    """A small record of tensors read as attributes (``value`` for algorithm keys).

    It stands in for MMEngine's ``LabelData``/``InstanceData`` inside a data sample:
    ``to(device)`` moves every tensor, ``to_dict()`` gives the plain fields.
    """

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def keys(self) -> list[str]:
        return list(self.__dict__)

    def to(self, *args: Any, **kwargs: Any) -> ValueData:
        return ValueData(
            **{
                k: v.to(*args, **kwargs) if isinstance(v, torch.Tensor) else v
                for k, v in self.__dict__.items()
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k}=Tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"{k}={v!r}"
            for k, v in self.__dict__.items()
        )
        return f"ValueData({inner})"


def _as_tensor(value: Any) -> torch.Tensor:
    """MMCV's ``to_tensor``: a number becomes a one-element tensor (``[value]``)."""
    if isinstance(value, (bool, int, np.integer)):
        return torch.tensor([int(value)], dtype=torch.long)
    if isinstance(value, (float, np.floating)):
        return torch.tensor([float(value)], dtype=torch.float32)
    return to_tensor(value)


def _view_to_tensor(img: Any, index: int) -> torch.Tensor:
    """``(H, W)`` / ``(H, W, C)`` -> ``(C, H, W)``; a 5-D clip ``(B, C, T, H, W)`` as it is."""
    if isinstance(img, torch.Tensor):
        return img
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim == 3:
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    if img.ndim == 5:
        return torch.from_numpy(np.ascontiguousarray(img))
    raise ValueError(
        f"PackSelfSupInputs: view {index} must be a 2-, 3- or 5-dimensional array, got shape "
        f"{img.shape}"
    )


@TRANSFORMS.register_module()
class PackSelfSupInputs(BaseTransform):
    """Pack ``results[key]`` (one image or a list of views) into a list of ``(C, H, W)``
    tensors under ``inputs``, and a :class:`DataSample` under ``data_samples``.

    ``algorithm_keys`` must be among ``gt_label``, ``pred_label``, ``sample_idx``, ``mask``
    (MMSelfSup's data sample has no other field); ``pseudo_label_keys`` may be any key;
    ``meta_keys`` are copied as metainfo. A key missing from the results is an error that
    names it.
    """

    def __init__(
        self,
        key: str = "img",
        algorithm_keys: Sequence[str] = (),
        pseudo_label_keys: Sequence[str] = (),
        meta_keys: Sequence[str] = (),
    ) -> None:
        if not isinstance(key, str):
            raise TypeError(f"PackSelfSupInputs key must be a str, got {type(key).__name__}")
        unknown = [k for k in algorithm_keys if k not in ALGORITHM_KEYS]
        if unknown:
            raise ValueError(
                f"PackSelfSupInputs algorithm_keys {unknown} are not fields of MMSelfSup's data "
                f"sample; choose from {list(ALGORITHM_KEYS)} (or pass them as "
                "pseudo_label_keys / meta_keys)"
            )
        self.key = key
        self.algorithm_keys = tuple(algorithm_keys)
        self.pseudo_label_keys = tuple(pseudo_label_keys)
        self.meta_keys = tuple(meta_keys)

    def _get(self, results: dict, key: str, kind: str) -> Any:
        if key not in results:
            raise KeyError(
                f"PackSelfSupInputs: {kind} {key!r} is not in the results; present keys: "
                f"{sorted(results)}"
            )
        return results[key]

    def transform(self, results: dict) -> dict:
        img = self._get(results, self.key, "key")
        views = img if isinstance(img, list) else [img]
        packed: dict[str, Any] = {
            "inputs": [_view_to_tensor(view, i) for i, view in enumerate(views)]
        }
        sample = DataSample()
        for key in self.algorithm_keys:
            setattr(sample, key, ValueData(value=_as_tensor(self._get(results, key, "key"))))
        if self.pseudo_label_keys:
            sample.pseudo_label = ValueData(
                **{
                    k: _as_tensor(self._get(results, k, "pseudo_label key"))
                    for k in self.pseudo_label_keys
                }
            )
        sample.set_metainfo({k: self._get(results, k, "meta key") for k in self.meta_keys})
        packed["data_samples"] = sample
        return packed

    def __repr__(self) -> str:
        return (
            f"PackSelfSupInputs(key={self.key!r}, algorithm_keys={list(self.algorithm_keys)}, "
            f"pseudo_label_keys={list(self.pseudo_label_keys)}, "
            f"meta_keys={list(self.meta_keys)})"
        )
