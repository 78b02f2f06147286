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

from vistra.data.structures import DataSample, PixelData
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
        """``data`` with tensors and data samples moved to :attr:`device`, recursively.

        Copies are ``non_blocking`` when the config says so and on every copy to CUDA.
        From the pinned batches the data loader gives on GPU runs (``pin_memory``) the copy
        then overlaps the GPU work queued before it; from pageable memory (data samples,
        which the loader does not pin) CUDA stages the bytes before returning, so it is as
        safe and skips the blocking copy's stream sync. Kernels queued after the copy on
        the same stream wait for it either way; only device-to-host copies need a sync,
        and the preprocessor makes none.
        """
        device = self.device
        return _cast(data, device, self._non_blocking or device.type == "cuda")

    def forward(self, data: dict, training: bool = False) -> dict:
        return self.cast_data(data)


def _cast(data: Any, device: torch.device, non_blocking: bool) -> Any:
    if isinstance(data, torch.Tensor):
        return data.to(device, non_blocking=non_blocking)
    if isinstance(data, DataSample):
        if device.type == "cpu" and _on_cpu(data):
            return data
        return data.to(device, non_blocking=non_blocking)
    if isinstance(data, Mapping):
        return {k: _cast(v, device, non_blocking) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(_cast(v, device, non_blocking) for v in data)
    return data


def _on_cpu(sample: DataSample) -> bool:
    """Whether every tensor of the record (pixel maps' too) is in CPU memory already."""
    for _, value in sample.items():
        tensor = value.data if isinstance(value, PixelData) else value
        if isinstance(tensor, torch.Tensor) and tensor.device.type != "cpu":
            return False
    return True


@MODELS.register_module()
class ImgDataPreprocessor(BaseDataPreprocessor):
    """Stack, pad, flip channels and normalise images (MMEngine's ``ImgDataPreprocessor``).

    ``mean``/``std`` have 1 or 3 values in the channel order *after* the flip; leave both
    None to skip normalisation. Padding uses ``pad_value`` after normalisation.
    """

    # MMEngine allows 1 or 3 values; MMSegmentation's preprocessor any number (one per
    # channel: the 6-channel LEVIR-CD change-detection configs)
    any_channel_count = False

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
                if len(values) not in (1, 3) and not self.any_channel_count:  # type: ignore[arg-type]
                    raise ValueError(f"{name} must have 1 or 3 values, got {values}")
            if len(mean) != len(std) and 1 not in (len(mean), len(std)):  # type: ignore[arg-type]
                raise ValueError(f"mean {mean} and std {std} have different lengths")
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
            img = img.flip(channel_dim)  # a copy: the float conversion below may then be in place
        elif img.dtype == torch.float32:
            img = img.clone()  # never normalise the caller's tensor in place
        img = img.float()
        if self._enable_normalize:
            values = max(self.mean.shape[0], self.std.shape[0])
            if values != 1 and img.shape[channel_dim] != values:
                raise ValueError(
                    f"mean/std have {values} values but the image has "
                    f"{img.shape[channel_dim]} channels (shape {tuple(img.shape)})"
                )
            # in place on the fresh tensor: the same values as (img - mean) / std, two
            # fewer full-size allocations per batch
            img = img.sub_(self.mean).div_(self.std)
        return img

    def process_inputs(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Images (a list of CHW or an NCHW tensor) -> one normalised, padded NCHW tensor."""
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() != 4:
                raise ValueError(f"stacked inputs must be NCHW, got shape {tuple(inputs.shape)}")
            batch = self._normalize(inputs, channel_dim=1)
            h, w = batch.shape[-2:]
            if h % self.pad_size_divisor == 0 and w % self.pad_size_divisor == 0:
                return batch  # nothing to pad: no second copy of the batch
            return stack_batch(list(batch), self.pad_size_divisor, self.pad_value)
        if isinstance(inputs, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in inputs):
            bad = [tuple(t.shape) for t in inputs if t.dim() != 3]
            if bad:
                raise ValueError(f"each input image must be CHW, got shapes {bad}")
            if inputs and len({t.shape for t in inputs}) == 1:
                # one size (a fixed crop): stack the uint8 images and normalise once, the
                # same values in 4 kernels instead of 4 per image, and a quarter of the bytes
                return self.process_inputs(torch.stack(list(inputs)))
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


# --------------------------------------------------------------------------- segmentation
def pad_seg_batch(
    inputs: Sequence[torch.Tensor],
    size: Sequence[int] | None = None,
    size_divisor: int | None = None,
    pad_val: float | int = 0,
) -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
    """Stack ``(C, H, W)`` images padded bottom/right (MMSeg's ``stack_batch``).

    The target is ``size`` = (h, w), or else the batch's largest image rounded up to a
    multiple of ``size_divisor``. Returns the batch and each image's padding as
    ``(left, right, top, bottom)``, the order ``F.pad`` takes.
    """
    if not inputs:
        raise ValueError("pad_seg_batch needs at least one image")
    if size is not None:
        target = (int(size[-2]), int(size[-1]))
    else:
        divisor = size_divisor or 1
        h = max(t.shape[-2] for t in inputs)
        w = max(t.shape[-1] for t in inputs)
        target = (math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor)
    paddings = [
        (0, max(target[1] - t.shape[-1], 0), 0, max(target[0] - t.shape[-2], 0)) for t in inputs
    ]
    padded = [F.pad(t, p, value=pad_val) if any(p) else t for t, p in zip(inputs, paddings)]
    if len({tuple(t.shape) for t in padded}) != 1:
        raise ValueError(
            f"cannot stack images of shapes {[tuple(t.shape) for t in inputs]} padded to "
            f"size={size}: an image larger than size is not cropped; crop to the size in the "
            "pipeline first (RandomCrop(crop_size=...)) or pad with size_divisor instead"
        )
    return torch.stack(padded), paddings


def _check_pad_args(size: Any, size_divisor: Any, where: str) -> tuple | None:
    if size is not None and size_divisor is not None:
        raise ValueError(
            f"{where}: give size or size_divisor, not both (got size={size}, "
            f"size_divisor={size_divisor})"
        )
    if size_divisor is not None and (not isinstance(size_divisor, int) or size_divisor < 1):
        raise ValueError(f"{where}: size_divisor must be a positive int, got {size_divisor!r}")
    if size is None:
        return None
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and s > 0 for s in size)
    ):
        raise ValueError(f"{where}: size must be (h, w) of positive ints, got {size!r}")
    return tuple(size)


@MODELS.register_module()
class SegDataPreProcessor(ImgDataPreprocessor):
    """MMSegmentation's data preprocessor: normalise, then pad images and label maps.

    Each image is channel-flipped (``bgr_to_rgb``/``rgb_to_bgr``) and normalised, then:

    - in training, padded bottom/right with ``pad_val`` to ``size`` = (h, w) (usually
      the crop size) or to the batch's largest size rounded up to ``size_divisor``;
      ``gt_sem_seg`` (and ``gt_edge_map``) are padded with ``seg_pad_val`` (255:
      ignored). Each sample gets ``img_shape``, ``pad_shape``, ``padding_size``
      (left, right, top, bottom) and ``batch_input_shape``; ``batch_augments`` (a list
      of callables ``(inputs, data_samples) -> (inputs, data_samples)``, or MODELS
      configs of such) run last;
    - in testing, padded per ``test_cfg=dict(size=...)`` or ``dict(size_divisor=...)``,
      or else only as far as stacking different sizes needs; labels stay unpadded and
      each sample gets ``pad_shape``, ``padding_size``/``img_padding_size`` (what the
      segmentor crops off again) and ``batch_input_shape``.
    """

    any_channel_count = True  # one mean/std value per channel, any number of channels

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        size: Sequence[int] | None = None,
        size_divisor: int | None = None,
        pad_val: float | int = 0,
        seg_pad_val: float | int = 255,
        bgr_to_rgb: bool = False,
        rgb_to_bgr: bool = False,
        batch_augments: Sequence[dict | Any] | None = None,
        test_cfg: dict | None = None,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(mean, std, 1, pad_val, bgr_to_rgb, rgb_to_bgr, non_blocking)
        self.size = _check_pad_args(size, size_divisor, "SegDataPreProcessor")
        self.size_divisor = size_divisor
        self.pad_val, self.seg_pad_val = pad_val, seg_pad_val
        self.test_cfg = self._check_test_cfg(test_cfg)
        self.batch_augments = self._build_batch_augments(batch_augments)

    @staticmethod
    def _check_test_cfg(test_cfg: dict | None) -> dict:
        if not test_cfg:
            return {}
        if not isinstance(test_cfg, Mapping):
            raise TypeError(
                f"test_cfg must be dict(size=...) or dict(size_divisor=...), got {test_cfg!r}"
            )
        unknown = sorted(set(test_cfg) - {"size", "size_divisor"})
        if unknown:
            raise ValueError(
                f"SegDataPreProcessor test_cfg has unknown keys {unknown}; valid: size, size_divisor"
            )
        size = _check_pad_args(
            test_cfg.get("size"), test_cfg.get("size_divisor"), "SegDataPreProcessor test_cfg"
        )
        return {"size": size, "size_divisor": test_cfg.get("size_divisor")}

    @staticmethod
    def _build_batch_augments(augments: Sequence[dict | Any] | None) -> list:
        if augments is None:
            return []
        if callable(augments) or isinstance(augments, Mapping):
            augments = [augments]
        built = []
        for i, aug in enumerate(augments):
            if isinstance(aug, Mapping):
                aug = MODELS.build(aug, key_path=f"data_preprocessor.batch_augments[{i}]")
            if not callable(aug):
                raise TypeError(
                    f"batch_augments[{i}] must be a callable (inputs, data_samples) -> "
                    f"(inputs, data_samples) or its config, got {type(aug).__name__}"
                )
            built.append(aug)
        return built

    def forward(self, data: dict, training: bool = False) -> dict:
        if "inputs" not in data:
            raise KeyError(f"the batch has no 'inputs' key; keys: {sorted(data)}")
        data = self.cast_data(data)
        inputs, samples = data["inputs"], data.get("data_samples")
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() != 4:
                raise ValueError(f"stacked inputs must be NCHW, got shape {tuple(inputs.shape)}")
            inputs = list(inputs)
        if not isinstance(inputs, (list, tuple)) or not all(
            isinstance(t, torch.Tensor) and t.dim() == 3 for t in inputs
        ):
            raise TypeError(
                "data['inputs'] must be a list of CHW tensors or an NCHW tensor (a list of lists "
                "comes from TestTimeAug: test it with SegTTAModel, i.e. --tta)"
            )
        if len({t.shape for t in inputs}) == 1:  # one size: normalise the batch at once
            images = list(self._normalize(torch.stack(list(inputs)), 1))
        else:
            images = [self._normalize(t, 0) for t in inputs]
        if training:
            if not samples:
                raise ValueError(
                    "SegDataPreProcessor needs data_samples with gt_sem_seg in training"
                )
            batch, paddings = pad_seg_batch(images, self.size, self.size_divisor, self.pad_val)
            self._pad_labels(samples, paddings)
            for sample, image, padding in zip(samples, images, paddings):
                sample.set_metainfo(
                    {
                        "img_shape": tuple(image.shape[-2:]),
                        "pad_shape": tuple(sample.gt_sem_seg.shape),
                        "padding_size": padding,
                        "batch_input_shape": tuple(batch.shape[-2:]),
                    }
                )
            for augment in self.batch_augments:
                batch, samples = augment(batch, samples)
            return {"inputs": batch, "data_samples": samples}
        batch, paddings = pad_seg_batch(
            images, self.test_cfg.get("size"), self.test_cfg.get("size_divisor"), self.pad_val
        )
        for sample, padding in zip(samples or [], paddings):
            if isinstance(sample, DataSample):
                sample.set_metainfo(
                    {
                        "pad_shape": tuple(batch.shape[-2:]),
                        "padding_size": padding,
                        "img_padding_size": padding,
                        "batch_input_shape": tuple(batch.shape[-2:]),
                    }
                )
        return {"inputs": batch, "data_samples": samples}

    def _pad_labels(self, samples: Sequence[DataSample], paddings: list[tuple]) -> None:
        for i, (sample, padding) in enumerate(zip(samples, paddings)):
            if "gt_sem_seg" not in sample:
                raise KeyError(
                    f"data_samples[{i}] has no gt_sem_seg; a training pipeline needs "
                    "LoadAnnotations before PackSegInputs"
                )
            for key in ("gt_sem_seg", "gt_edge_map"):
                if key in sample and any(padding):
                    label = sample.get(key)
                    label.data = F.pad(label.data, padding, value=self.seg_pad_val)
