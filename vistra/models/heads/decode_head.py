"""``BaseDecodeHead`` and ``BaseCascadeDecodeHead``: what every MMSegmentation 1.x decode
head shares.

A head turns backbone/neck features into per-pixel logits (``forward``), and
- ``loss(inputs, data_samples, train_cfg)``: logits resized to the label maps, optional
  pixel-sampler weights, one entry per loss (``loss_ce``, ``loss_dice``, ...; losses with
  the same ``loss_name`` are summed), and ``acc_seg``;
- ``predict(inputs, batch_img_metas, test_cfg)``: logits resized to the network input.

State-dict keys: ``conv_seg.*`` (the 1x1 classifier) plus each head's own modules.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.errors import DataError
from vistra.data.structures import DataSample
from vistra.models.base import BaseModule
from vistra.models.utils.seg_utils import accuracy, build_pixel_sampler, resize
from vistra.registry import MODELS, did_you_mean

INPUT_TRANSFORMS = (None, "resize_concat", "multiple_select")


class BaseDecodeHead(BaseModule):
    """Base class of decode heads, with MMSegmentation 1.x's arguments.

    ``in_index``/``input_transform`` pick the features: one map (``None``), several maps
    resized to the first and concatenated (``'resize_concat'``), or a list of maps
    (``'multiple_select'``). ``out_channels=1`` with ``num_classes=2`` is the binary case:
    a sigmoid loss (``use_sigmoid=True``) and ``threshold`` (default 0.3) at prediction.
    ``sampler=dict(type='OHEMPixelSampler', ...)`` weights the pixels of the loss.
    ``dropout_ratio <= 0`` disables the ``Dropout2d`` before ``conv_seg``.
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        channels: int,
        *,
        num_classes: int,
        out_channels: int | None = None,
        threshold: float | None = None,
        dropout_ratio: float = 0.1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        in_index: int | Sequence[int] = -1,
        input_transform: str | None = None,
        loss_decode: dict | Sequence[dict] = dict(  # noqa: B006 (never mutated)
            type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0
        ),
        ignore_index: int = 255,
        sampler: dict | None = None,
        align_corners: bool = False,
        init_cfg: dict | list[dict] | None = dict(  # noqa: B006 (copied by BaseModule)
            type="Normal", std=0.01, override=dict(name="conv_seg")
        ),
        **unexpected: Any,
    ) -> None:
        if unexpected:
            _reject_arguments(type(self), unexpected)
        super().__init__(init_cfg)
        self._init_inputs(in_channels, in_index, input_transform)
        self.channels, self.dropout_ratio = channels, dropout_ratio
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.ignore_index, self.align_corners = ignore_index, align_corners
        self.num_classes = num_classes
        self.out_channels, self.threshold = _binary_settings(num_classes, out_channels, threshold)
        self.loss_decode = _build_losses(loss_decode)
        self.sampler = None if sampler is None else build_pixel_sampler(sampler, context=self)
        self.conv_seg = nn.Conv2d(channels, self.out_channels, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None

    def extra_repr(self) -> str:
        return (
            f"input_transform={self.input_transform}, ignore_index={self.ignore_index}, "
            f"align_corners={self.align_corners}"
        )

    # ------------------------------------------------------------------ inputs
    def _init_inputs(
        self,
        in_channels: int | Sequence[int],
        in_index: int | Sequence[int],
        input_transform: str | None,
    ) -> None:
        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(
                f"input_transform must be one of {INPUT_TRANSFORMS}, got {input_transform!r}"
            )
        self.input_transform, self.in_index = input_transform, in_index
        if input_transform is None:
            if not isinstance(in_channels, int) or not isinstance(in_index, int):
                raise TypeError(
                    "with input_transform=None, in_channels and in_index must be ints, got "
                    f"in_channels={in_channels!r}, in_index={in_index!r}; use "
                    "input_transform='resize_concat' or 'multiple_select' for several inputs"
                )
            self.in_channels: Any = in_channels
            return
        if not isinstance(in_channels, (list, tuple)) or not isinstance(in_index, (list, tuple)):
            raise TypeError(
                f"input_transform={input_transform!r} needs lists for in_channels and "
                f"in_index, got in_channels={in_channels!r}, in_index={in_index!r}"
            )
        if len(in_channels) != len(in_index):
            raise ValueError(
                f"in_channels {list(in_channels)} and in_index {list(in_index)} must have the "
                "same length"
            )
        self.in_channels = sum(in_channels) if input_transform == "resize_concat" else in_channels

    def _transform_inputs(self, inputs: Sequence[torch.Tensor]) -> Any:
        """The selected feature map(s), as ``input_transform`` says."""
        if self.input_transform == "resize_concat":
            picked = [inputs[i] for i in self.in_index]
            return torch.cat(
                [
                    resize(
                        x, picked[0].shape[2:], mode="bilinear", align_corners=self.align_corners
                    )
                    for x in picked
                ],
                dim=1,
            )
        if self.input_transform == "multiple_select":
            return [inputs[i] for i in self.in_index]
        return inputs[self.in_index]

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        """Classify each pixel (dropout, then ``conv_seg``)."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)

    def loss(
        self,
        inputs: Sequence[torch.Tensor],
        batch_data_samples: Sequence[DataSample],
        train_cfg: dict | None,
    ) -> dict[str, torch.Tensor]:
        return self.loss_by_feat(self.forward(inputs), batch_data_samples)

    def predict(
        self, inputs: Sequence[torch.Tensor], batch_img_metas: list[dict], test_cfg: dict | None
    ) -> torch.Tensor:
        return self.predict_by_feat(self.forward(inputs), batch_img_metas)

    # ------------------------------------------------------------------ from logits
    def _stack_batch_gt(self, batch_data_samples: Sequence[DataSample]) -> torch.Tensor:
        """The label maps as ``(N, 1, H, W)``."""
        missing = [i for i, s in enumerate(batch_data_samples) if "gt_sem_seg" not in s]
        if missing:
            raise KeyError(
                f"data samples {missing} have no 'gt_sem_seg'; the training pipeline must load "
                "annotations (LoadAnnotations) and pack them (PackSegInputs)"
            )
        maps = [s.gt_sem_seg.data for s in batch_data_samples]
        for sample, seg in zip(batch_data_samples, maps, strict=True):
            if seg.dim() != 3 or seg.shape[0] != 1:
                raise DataError(
                    f"mask {_mask_name(sample)} gives a label map of shape {tuple(seg.shape)}; "
                    "expected one channel of class indices (1, H, W). Convert colour masks "
                    "to single-channel PNGs of class indices first"
                )
        if len({tuple(m.shape) for m in maps}) > 1:
            raise ValueError(
                f"gt_sem_seg maps differ in size {[tuple(m.shape) for m in maps]}; the "
                "SegDataPreProcessor pads them to one size"
            )
        labels = torch.stack(maps, dim=0)
        check_labels(labels, batch_data_samples, self.num_classes, self.ignore_index)
        return labels

    def loss_by_feat(
        self, seg_logits: torch.Tensor, batch_data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        """Losses of ``seg_logits`` against the samples' ``gt_sem_seg``."""
        seg_label = self._stack_batch_gt(batch_data_samples)
        seg_logits = resize(
            seg_logits, seg_label.shape[2:], mode="bilinear", align_corners=self.align_corners
        )
        seg_weight = None if self.sampler is None else self.sampler.sample(seg_logits, seg_label)
        seg_label = seg_label.squeeze(1)
        losses: dict[str, torch.Tensor] = {}
        for loss_module in self._loss_modules():
            value = loss_module(
                seg_logits, seg_label, weight=seg_weight, ignore_index=self.ignore_index
            )
            name = loss_module.loss_name
            losses[name] = losses[name] + value if name in losses else value
        losses["acc_seg"] = accuracy(seg_logits, seg_label, ignore_index=self.ignore_index)
        return losses

    def predict_by_feat(
        self, seg_logits: torch.Tensor, batch_img_metas: list[dict]
    ) -> torch.Tensor:
        """``seg_logits`` resized to the network input (MMSegmentation's rule: a
        ``torch.Size`` ``img_shape`` -- a slide-inference crop -- else ``pad_shape``, else
        ``img_shape``)."""
        size = input_size(batch_img_metas[0])
        return resize(seg_logits, size, mode="bilinear", align_corners=self.align_corners)

    def _loss_modules(self) -> list[nn.Module]:
        if isinstance(self.loss_decode, nn.ModuleList):
            return list(self.loss_decode)
        return [self.loss_decode]


class BaseCascadeDecodeHead(BaseDecodeHead):
    """A head that refines the output of the previous stage (``CascadeEncoderDecoder``)."""

    def forward(self, inputs: Sequence[torch.Tensor], prev_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def loss(  # type: ignore[override]
        self,
        inputs: Sequence[torch.Tensor],
        prev_output: torch.Tensor,
        batch_data_samples: Sequence[DataSample],
        train_cfg: dict | None,
    ) -> dict[str, torch.Tensor]:
        return self.loss_by_feat(self.forward(inputs, prev_output), batch_data_samples)

    def predict(  # type: ignore[override]
        self,
        inputs: Sequence[torch.Tensor],
        prev_output: torch.Tensor,
        batch_img_metas: list[dict],
        test_cfg: dict | None,
    ) -> torch.Tensor:
        return self.predict_by_feat(self.forward(inputs, prev_output), batch_img_metas)

    def forward_tensor(
        self, inputs: Sequence[torch.Tensor], prev_output: torch.Tensor, test_cfg: dict | None
    ) -> torch.Tensor:
        """This stage's logits in the segmentor's ``'tensor'`` mode (before resizing)."""
        return self.forward(inputs, prev_output)


# ----------------------------------------------------------------------------- helpers
def check_labels(
    labels: torch.Tensor,
    batch_data_samples: Sequence[DataSample],
    num_classes: int,
    ignore_index: int,
) -> None:
    """Fail with a :class:`DataError` naming the mask file(s) when ``labels`` (``(N, 1, H, W)``)
    hold values that are neither a class index nor ``ignore_index``.

    One elementwise test and one sync per batch; only a failing batch is examined sample
    by sample. Without it, cross-entropy stops with PyTorch's "Target 2 is out of bounds"
    (or, on a GPU, a device-side assert) that names no file.
    """
    bad = ((labels < 0) | (labels >= num_classes)) & (labels != ignore_index)
    if not bool(bad.any()):
        return
    culprits = []
    for i, sample in enumerate(batch_data_samples):
        if bool(bad[i].any()):
            values = torch.unique(labels[i][bad[i]]).tolist()
            culprits.append((_mask_name(sample), values))
    name, values = culprits[0]
    shown = ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
    more = f" (and {len(culprits) - 1} more mask(s) in this batch)" if len(culprits) > 1 else ""
    pad = (
        "; 255 is also the default seg_pad_val of SegDataPreProcessor, which should equal "
        "ignore_index"
        if 255 in values and ignore_index != 255
        else ""
    )
    raise DataError(
        f"mask {name} holds label value(s) {shown}{more}, outside the valid values: class "
        f"indices 0..{num_classes - 1} (num_classes={num_classes}) and ignore_index="
        f"{ignore_index}. A mask must be a single-channel PNG of class indices: convert colour "
        "or 0/255 masks first; masks whose classes start at 1 (0 = unlabelled) need "
        "reduce_zero_label=True on the dataset; otherwise check num_classes in the decode "
        f"heads (values are counted after reduce_zero_label and the dataset's label_map){pad}"
    )


def _mask_name(sample: DataSample) -> str:
    """How an error names a sample's mask: its file, else its image, else its index."""
    meta = sample.metainfo
    if meta.get("seg_map_path"):
        return repr(str(meta["seg_map_path"]))
    if meta.get("img_path"):
        return f"of image {str(meta['img_path'])!r}"
    return f"of sample {meta.get('sample_idx', '?')}"


def input_size(img_meta: dict) -> tuple[int, int]:
    """The size of the network input an image's logits must be resized to."""
    img_shape = img_meta.get("img_shape")
    if isinstance(img_shape, torch.Size):
        return tuple(img_shape[:2])  # type: ignore[return-value]
    if img_meta.get("pad_shape") is not None:
        return tuple(img_meta["pad_shape"][:2])  # type: ignore[return-value]
    if img_shape is None:
        raise KeyError(
            f"image metainfo has neither 'img_shape' nor 'pad_shape': {sorted(img_meta)}"
        )
    return tuple(img_shape[:2])  # type: ignore[return-value]


def _binary_settings(
    num_classes: int, out_channels: int | None, threshold: float | None
) -> tuple[int, float | None]:
    """``out_channels`` and ``threshold`` after MMSegmentation's binary-case rules."""
    if out_channels is None:
        if num_classes == 2:
            warnings.warn(
                "For binary segmentation, we suggest using `out_channels = 1` to define the "
                "output channels of segmentor, and use `threshold` to convert seg_logits into "
                "a prediction applying a threshold",
                stacklevel=3,
            )
        out_channels = num_classes
    if out_channels != num_classes and out_channels != 1:
        raise ValueError(
            "out_channels should be equal to num_classes, except binary segmentation set "
            f"out_channels == 1 and num_classes == 2, but got out_channels={out_channels} "
            f"and num_classes={num_classes}"
        )
    if out_channels == 1 and threshold is None:
        threshold = 0.3
        warnings.warn("threshold is not defined for binary, and defaults to 0.3", stacklevel=3)
    return out_channels, threshold


def _build_losses(loss_decode: dict | Sequence[dict]) -> nn.Module:
    if isinstance(loss_decode, dict):
        return MODELS.build(loss_decode, key_path="loss_decode")
    if isinstance(loss_decode, (list, tuple)):
        return nn.ModuleList(
            MODELS.build(cfg, key_path=f"loss_decode[{i}]") for i, cfg in enumerate(loss_decode)
        )
    raise TypeError(
        f"loss_decode must be a dict or a sequence of dicts, but got {type(loss_decode).__name__}"
    )


def _reject_arguments(cls: type, unexpected: dict[str, Any]) -> None:
    """Name the unknown arguments of a head and the closest valid ones."""
    valid: list[str] = []
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and issubclass(klass, BaseDecodeHead):
            for name, param in inspect.signature(klass.__init__).parameters.items():
                plain = param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
                if name != "self" and plain and name not in valid:
                    valid.append(name)
    key = next(iter(unexpected))
    raise TypeError(
        f"{cls.__name__} got an unexpected argument {key!r}.{did_you_mean(key, valid)}"
        f" Valid arguments: {', '.join(valid)}"
    )
