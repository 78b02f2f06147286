"""Data preprocessors: the first step of the model, run on the model's device.

A collated batch ``{'inputs': [uint8 CHW tensors] | NCHW tensor, 'data_samples': [...]}``
is moved to the device, stacked (padded to the largest image, bottom/right, then up to
``pad_size_divisor``), converted to float, channel-flipped when asked (images arrive BGR)
and normalised. ``ClsDataPreprocessor`` also turns labels into one-hot scores and runs
Mixup/CutMix in training. Names and arguments are MMEngine's and MMPretrain's.

The device is tracked by an empty non-persistent buffer, so ``model.to(...)`` moves it
and nothing of the preprocessor appears in a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample
from vistra.registry import MODELS


def stack_batch(
    tensors: Sequence[torch.Tensor], pad_size_divisor: int = 1, pad_value: float | int = 0
) -> torch.Tensor:
    """Stack ``(C, H, W)`` tensors, padding bottom/right to the largest size rounded up to
    a multiple of ``pad_size_divisor``."""
    if not tensors:
        raise ValueError("stack_batch needs at least one tensor")
    if len({t.dim() for t in tensors}) != 1 or len({t.shape[:-2] for t in tensors}) != 1:
        raise ValueError(
            f"images must share their leading dims, got shapes {[tuple(t.shape) for t in tensors]}"
        )
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    h = math.ceil(h / pad_size_divisor) * pad_size_divisor
    w = math.ceil(w / pad_size_divisor) * pad_size_divisor
    padded = [
        F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=pad_value)
        if t.shape[-2:] != (h, w)
        else t
        for t in tensors
    ]
    return torch.stack(padded)


@MODELS.register_module()
class BaseDataPreprocessor(nn.Module):
    """Move every tensor and data sample of the batch to the model's device."""

    def __init__(self, non_blocking: bool = False) -> None:
        super().__init__()
        self._non_blocking = non_blocking
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._device_anchor.device

    def cast_data(self, data: Any) -> Any:
        """``data`` with tensors and data samples moved to :attr:`device`, recursively."""
        if isinstance(data, torch.Tensor):
            return data.to(self.device, non_blocking=self._non_blocking)
        if isinstance(data, DataSample):
            return data if self.device.type == "cpu" and _on_cpu(data) else data.to(self.device)
        if isinstance(data, Mapping):
            return {k: self.cast_data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return type(data)(self.cast_data(v) for v in data)
        return data

    def forward(self, data: dict, training: bool = False) -> dict:
        return self.cast_data(data)


def _on_cpu(sample: DataSample) -> bool:
    return all(getattr(v, "device", torch.device("cpu")).type == "cpu" for _, v in sample.items())


@MODELS.register_module()
class ImgDataPreprocessor(BaseDataPreprocessor):
    """Stack, pad, flip channels and normalise images (MMEngine's ``ImgDataPreprocessor``).

    ``mean``/``std`` have 1 or 3 values in the channel order *after* the flip; leave both
    None to skip normalisation. Padding uses ``pad_value`` after normalisation.
    """

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad_size_divisor: int = 1,
        pad_value: float | int = 0,
        bgr_to_rgb: bool = False,
        rgb_to_bgr: bool = False,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(non_blocking)
        if bgr_to_rgb and rgb_to_bgr:
            raise ValueError("bgr_to_rgb and rgb_to_bgr cannot both be True")
        if (mean is None) != (std is None):
            raise ValueError(
                f"mean and std must both be given or both be None, got mean={mean}, std={std}"
            )
        if not isinstance(pad_size_divisor, int) or pad_size_divisor < 1:
            raise ValueError(f"pad_size_divisor must be a positive int, got {pad_size_divisor!r}")
        self._enable_normalize = mean is not None
        if mean is not None:
            for name, values in (("mean", mean), ("std", std)):
                if len(values) not in (1, 3):  # type: ignore[arg-type]
                    raise ValueError(f"{name} must have 1 or 3 values, got {values}")
            self.register_buffer(
                "mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), False
            )
            self.register_buffer(
                "std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), False
            )
        self._channel_conversion = bgr_to_rgb or rgb_to_bgr
        self.pad_size_divisor, self.pad_value = pad_size_divisor, pad_value

    def _normalize(self, img: torch.Tensor, channel_dim: int) -> torch.Tensor:
        if self._channel_conversion and img.shape[channel_dim] == 3:
            img = img.flip(channel_dim)
        img = img.float()
        if self._enable_normalize:
            if self.mean.shape[0] == 3 and img.shape[channel_dim] != 3:
                raise ValueError(
                    f"mean/std have 3 values but the image has {img.shape[channel_dim]} channels "
                    f"(shape {tuple(img.shape)})"
                )
            img = (img - self.mean) / self.std
        return img

    def process_inputs(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Images (a list of CHW or an NCHW tensor) -> one normalised, padded NCHW tensor."""
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() != 4:
                raise ValueError(f"stacked inputs must be NCHW, got shape {tuple(inputs.shape)}")
            batch = self._normalize(inputs, channel_dim=1)
            return stack_batch(list(batch), self.pad_size_divisor, self.pad_value)
        if isinstance(inputs, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in inputs):
            bad = [tuple(t.shape) for t in inputs if t.dim() != 3]
            if bad:
                raise ValueError(f"each input image must be CHW, got shapes {bad}")
            return stack_batch(
                [self._normalize(t, 0) for t in inputs], self.pad_size_divisor, self.pad_value
            )
        raise TypeError(
            "data['inputs'] must be a list of CHW tensors or an NCHW tensor, got "
            f"{type(inputs).__name__}"
        )

    def forward(self, data: dict, training: bool = False) -> dict:
        if "inputs" not in data:
            raise KeyError(f"the batch has no 'inputs' key; keys: {sorted(data)}")
        data = self.cast_data(data)
        return {
            "inputs": self.process_inputs(data["inputs"]),
            "data_samples": data.get("data_samples"),
        }


@MODELS.register_module()
class ClsDataPreprocessor(ImgDataPreprocessor):
    """Image preprocessing plus labels for classification (MMPretrain).

    ``to_rgb`` flips BGR to RGB. ``to_onehot`` (forced on by ``batch_augments``) writes
    one-hot ``gt_score`` from ``gt_label`` with ``num_classes`` (or the samples'
    ``num_classes`` metainfo). ``batch_augments=dict(augments=[...], probs=None)`` mixes
    images and scores in training only.
    """

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad_size_divisor: int = 1,
        pad_value: float | int = 0,
        to_rgb: bool = False,
        to_onehot: bool = False,
        num_classes: int | None = None,
        batch_augments: dict | None = None,
    ) -> None:
        super().__init__(mean, std, pad_size_divisor, pad_value, bgr_to_rgb=to_rgb)
        from vistra.models.utils.batch_augments import RandomBatchAugment

        self.to_onehot, self.num_classes = to_onehot, num_classes
        self.batch_augments = None
        if batch_augments:
            if not isinstance(batch_augments, Mapping):
                raise TypeError(
                    f"batch_augments must be dict(augments=[...], probs=...), got {batch_augments!r}"
                )
            self.batch_augments = RandomBatchAugment(**batch_augments)
            self.to_onehot = True  # the mixed labels are scores

    def forward(self, data: dict, training: bool = False) -> dict:
        out = super().forward(data, training)
        inputs, samples = out["inputs"], out["data_samples"]
        if not samples or not isinstance(samples[0], DataSample):
            return out
        first = samples[0]
        scores = None
        if "gt_score" in first:
            scores = torch.stack([s.gt_score for s in samples]).to(self.device)
        elif self.to_onehot and "gt_label" in first:
            scores = self._onehot([s.gt_label for s in samples], first)
        if training and self.batch_augments is not None and scores is not None:
            inputs, scores = self.batch_augments(inputs, scores)
        if "gt_label" in first:
            for s in samples:
                s.set_gt_label(s.gt_label.to(self.device))
        if scores is not None:
            for s, score in zip(samples, scores):
                s.set_gt_score(score)
        return {"inputs": inputs, "data_samples": samples}

    def _onehot(self, labels: list[torch.Tensor], first: DataSample) -> torch.Tensor:
        num_classes = self.num_classes or first.get("num_classes")
        if num_classes is None:
            raise ValueError(
                "one-hot labels (to_onehot or batch_augments) need num_classes: set "
                "model.data_preprocessor.num_classes"
            )
        scores = torch.zeros(len(labels), num_classes, device=self.device)
        for i, label in enumerate(labels):
            label = label.reshape(-1).long()
            if label.numel() and (label.min() < 0 or label.max() >= num_classes):
                raise ValueError(
                    f"gt_label {label.tolist()} out of range for num_classes={num_classes}"
                )
            scores[i, label.to(self.device)] = 1.0
        return scores
