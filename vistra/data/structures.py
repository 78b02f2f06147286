"""Per-sample records passed between transforms, models and metrics.

Field names follow OpenMMLab's (``gt_label``, ``pred_label``, ``pred_score``, ``gt_sem_seg``,
``pred_sem_seg``, ``seg_logits``) so that metrics and hooks written for MMPretrain or
MMSegmentation port unchanged. Metrics receive ``DataSample.to_dict()`` output, exactly as
MMEngine's evaluator hands them, so ``data_sample['pred_sem_seg']['data']`` works.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch


class PixelData:
    """A per-pixel map (``data`` is a ``(C, H, W)`` tensor) plus its metainfo."""

    def __init__(self, data: torch.Tensor | np.ndarray | None = None, **metainfo: Any) -> None:
        self.metainfo: dict[str, Any] = dict(metainfo)
        if data is not None:
            self.data = data

    @property
    def data(self) -> torch.Tensor:
        return self._data

    @data.setter
    def data(self, value: torch.Tensor | np.ndarray) -> None:
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if value.ndim == 2:
            value = value[None]
        if value.ndim != 3:
            raise ValueError(
                f"PixelData.data must be (H, W) or (C, H, W), got shape {tuple(value.shape)}"
            )
        self._data = value

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self._data.shape[-2:])  # type: ignore[return-value]

    def to(self, *args: Any, **kwargs: Any) -> PixelData:
        return PixelData(self._data.to(*args, **kwargs), **self.metainfo)

    def cpu(self) -> PixelData:
        return PixelData(self._data.cpu(), **self.metainfo)

    def numpy(self) -> np.ndarray:
        return self._data.detach().cpu().numpy()

    def to_dict(self) -> dict[str, Any]:
        return {**self.metainfo, "data": self._data}

    def __getitem__(self, key: str) -> Any:
        return self._data if key == "data" else self.metainfo[key]

    def __repr__(self) -> str:
        return f"PixelData(shape={tuple(self._data.shape)}, dtype={self._data.dtype})"


class DataSample:
    """Annotations and predictions of one sample.

    ``metainfo`` holds what describes the sample (``img_path``, ``ori_shape``, ``img_shape``,
    ``scale_factor``, ``flip``, ...); every other attribute is a data field. Fields can be
    read as attributes or items, as in OpenMMLab's ``BaseDataElement``.
    """

    def __init__(self, *, metainfo: dict[str, Any] | None = None, **fields: Any) -> None:
        object.__setattr__(self, "_metainfo", dict(metainfo or {}))
        object.__setattr__(self, "_fields", {})
        for key, value in fields.items():
            setattr(self, key, value)

    # --------------------------------------------------------------- metainfo
    @property
    def metainfo(self) -> dict[str, Any]:
        return self._metainfo

    def set_metainfo(self, metainfo: dict[str, Any]) -> DataSample:
        self._metainfo.update(metainfo)
        return self

    # --------------------------------------------------------------- fields
    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        elif name in self._metainfo:
            self._metainfo[name] = value
        else:
            if name == "mask" and isinstance(value, np.ndarray):
                value = torch.from_numpy(value)  # MMPretrain's set_mask: masks are tensors
            self._fields[name] = value

    def __reduce__(self) -> tuple:
        # Data-loader workers pickle one record per sample and the main process unpickles
        # it. Tiny tensors (a label, a score) travel as numpy bytes in the pickle: as
        # tensors, each would get a shared-memory segment and a file descriptor of its own
        # (~30 us per tensor on each side). Explicit, too, because the default protocol
        # looks up __setstate__/__getnewargs__, each a miss through __getattr__.
        fields, inline = dict(self._fields), []
        for key, value in fields.items():
            array = _small_array(value)
            if array is not None:
                fields[key] = array
                inline.append(key)
        return (_rebuild, (type(self), self._metainfo, fields, tuple(inline)))

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            return fields[name]
        metainfo = self.__dict__.get("_metainfo", {})
        if name in metainfo:
            return metainfo[name]
        raise AttributeError(f"DataSample has no field {name!r}; fields: {sorted(fields)}")

    def __delattr__(self, name: str) -> None:
        if name in self._fields:
            del self._fields[name]
        elif name in self._metainfo:
            del self._metainfo[name]
        else:
            raise AttributeError(name)

    def __contains__(self, name: str) -> bool:
        return name in self._fields or name in self._metainfo

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in self else default

    def keys(self) -> list[str]:
        return list(self._fields)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self._fields.items())

    def pop(self, name: str, *default: Any) -> Any:
        if name in self._fields:
            return self._fields.pop(name)
        if default:
            return default[0]
        raise KeyError(name)

    # --------------------------------------------------------------- OpenMMLab helpers
    def set_gt_label(self, value: int | Sequence[int] | torch.Tensor | np.ndarray) -> DataSample:
        self.gt_label = _as_label(value)
        return self

    def set_gt_score(self, value: torch.Tensor) -> DataSample:
        self.gt_score = torch.as_tensor(value)
        return self

    def set_pred_label(self, value: int | Sequence[int] | torch.Tensor | np.ndarray) -> DataSample:
        self.pred_label = _as_label(value)
        return self

    def set_pred_score(self, value: torch.Tensor) -> DataSample:
        self.pred_score = torch.as_tensor(value)
        return self

    # --------------------------------------------------------------- conversion
    def to(self, *args: Any, **kwargs: Any) -> DataSample:
        out = self.new()
        for key, value in self._fields.items():
            out._fields[key] = value.to(*args, **kwargs) if hasattr(value, "to") else value
        return out

    def cpu(self) -> DataSample:
        return self.to("cpu")

    def new(self) -> DataSample:
        return DataSample(metainfo=copy.deepcopy(self._metainfo))

    def clone(self) -> DataSample:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        """Metainfo and fields in one plain dict; nested records become dicts too."""
        out = dict(self._metainfo)
        for key, value in self._fields.items():
            out[key] = value.to_dict() if hasattr(value, "to_dict") else value
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={_brief(v)}" for k, v in self._fields.items())
        return f"DataSample({fields}, metainfo keys={sorted(self._metainfo)})"


#: tensors of at most this many elements are pickled inline (see DataSample.__reduce__)
INLINE_NUMEL = 256


def _small_array(value: Any) -> np.ndarray | None:
    """A CPU tensor of at most INLINE_NUMEL elements as the numpy array sharing its memory
    (None for anything else, and for dtypes numpy lacks, such as bfloat16)."""
    if not isinstance(value, torch.Tensor) or value.numel() > INLINE_NUMEL:
        return None
    if value.device.type != "cpu" or value.requires_grad or value.dtype == torch.bfloat16:
        return None
    try:
        return value.numpy()
    except (TypeError, RuntimeError):
        return None


def _rebuild(
    cls: type, metainfo: dict[str, Any], fields: dict[str, Any], inline: tuple[str, ...] = ()
) -> DataSample:
    for key in inline:
        fields[key] = torch.from_numpy(fields[key])
    sample = cls.__new__(cls)
    object.__setattr__(sample, "_metainfo", metainfo)
    object.__setattr__(sample, "_fields", fields)
    return sample


def _as_label(value: int | Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.reshape(-1) if value.ndim == 0 else value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value).reshape(-1)
    if isinstance(value, (int, np.integer)):
        # through numpy: ~1 us against torch.tensor's ~3 us, once per sample in PackInputs
        return torch.from_numpy(np.array([value], dtype=np.int64))
    return torch.as_tensor(list(value), dtype=torch.long)


def _brief(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)}"
    return repr(value)


#: MMSelfSup 1.x's name of the per-sample record: the same class (``PackSelfSupInputs``
#: fills its ``gt_label``/``sample_idx``/``mask``/``pred_label`` fields as elements with a
#: ``value`` tensor, as MMSelfSup does), so code written against it ports by its import.
SelfSupDataSample = DataSample
