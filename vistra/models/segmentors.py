"""Segmentors (MMSegmentation 1.x): ``EncoderDecoder`` and ``CascadeEncoderDecoder``.

backbone -> optional neck -> decode head (plus auxiliary heads for training only).
State-dict keys are ``backbone.*``, ``neck.*``, ``decode_head.*`` (``decode_head.{i}.*``
for a cascade) and ``auxiliary_head.*`` (``auxiliary_head.{i}.*`` for a list), so
MMSegmentation checkpoints load as they are.

- ``mode='loss'``: head losses prefixed ``decode.`` (``decode_{i}.`` per cascade stage)
  and ``aux.`` (``aux_{i}.`` for a list of auxiliary heads);
- ``mode='predict'``: ``seg_logits`` and ``pred_sem_seg`` at each image's ``ori_shape``,
  padding removed and test-time flips undone (``postprocess_result``);
- ``mode='tensor'``: the decode head's raw logits.

``test_cfg=dict(mode='whole')`` runs the network on the whole (padded) image;
``dict(mode='slide', crop_size=(h, w), stride=(h, w))`` averages overlapping crops.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vistra.data.structures import DataSample, PixelData
from vistra.models.base import BaseModel
from vistra.models.utils.seg_utils import add_prefix, cfg_value, resize
from vistra.registry import MODELS

TEST_MODES = ("whole", "slide")
FLIP_DIRECTIONS = ("horizontal", "vertical")


# ----------------------------------------------------------------------------- base
class BaseSegmentor(BaseModel):
    """Forward modes and result post-processing shared by segmentors.

    ``data_preprocessor`` defaults to ``SegDataPreProcessor`` (also when the dict gives no
    ``type``). Subclasses set ``decode_head``, ``align_corners`` and define ``loss``,
    ``predict`` and ``_forward``.
    """

    align_corners: bool

    def __init__(
        self,
        data_preprocessor: dict | nn.Module | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(data_preprocessor=_preprocessor_cfg(data_preprocessor), init_cfg=init_cfg)

    @property
    def with_neck(self) -> bool:
        return getattr(self, "neck", None) is not None

    @property
    def with_auxiliary_head(self) -> bool:
        return getattr(self, "auxiliary_head", None) is not None

    @property
    def with_decode_head(self) -> bool:
        return getattr(self, "decode_head", None) is not None

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: Sequence[DataSample] | None = None,
        mode: str = "tensor",
    ) -> Any:
        if mode == "loss":
            if data_samples is None:
                raise ValueError("mode='loss' needs data_samples with gt_sem_seg")
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self._forward(inputs, data_samples)
        raise ValueError(f"invalid forward mode {mode!r}; choose 'loss', 'predict' or 'tensor'")

    def loss(self, inputs: torch.Tensor, data_samples: Sequence[DataSample]) -> dict:
        raise NotImplementedError

    def predict(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample] | None = None
    ) -> list[DataSample]:
        raise NotImplementedError

    def _forward(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample] | None = None
    ) -> Any:
        raise NotImplementedError

    def _prediction_head(self) -> nn.Module:
        """The head whose ``threshold`` turns binary logits into labels."""
        return self.decode_head

    def postprocess_result(
        self, seg_logits: torch.Tensor, data_samples: Sequence[DataSample] | None = None
    ) -> list[DataSample]:
        """Per-image ``seg_logits`` and ``pred_sem_seg`` (argmax, or ``sigmoid > threshold``
        for one channel).

        With data samples, each image's padding (``img_padding_size``, else
        ``padding_size``: left, right, top, bottom) is cut off, a test-time flip is undone
        and the logits are resized to ``ori_shape``; without, new samples get the logits as
        they are.
        """
        batch_size, channels, height, width = seg_logits.shape
        only_prediction = data_samples is None
        samples = [DataSample() for _ in range(batch_size)] if only_prediction else data_samples
        for i in range(batch_size):
            if only_prediction:
                logits = seg_logits[i]
            else:
                logits = self._restore_original(seg_logits[i : i + 1], samples[i].metainfo)  # type: ignore[index]
            if channels > 1:
                pred = logits.argmax(dim=0, keepdim=True)
            else:
                logits = logits.sigmoid()
                pred = (logits > self._prediction_head().threshold).to(logits)
            samples[i].seg_logits = PixelData(data=logits)  # type: ignore[index]
            samples[i].pred_sem_seg = PixelData(data=pred)  # type: ignore[index]
        return list(samples)  # type: ignore[arg-type]

    def _restore_original(self, logits: torch.Tensor, meta: Mapping[str, Any]) -> torch.Tensor:
        """``(1, C, H, W)`` logits of a padded, maybe flipped input -> ``(C, *ori_shape)``."""
        height, width = logits.shape[2:]
        if "img_padding_size" in meta:
            padding = meta["img_padding_size"]
        else:
            padding = meta.get("padding_size", [0, 0, 0, 0])
        left, right, top, bottom = (int(v) for v in padding)
        logits = logits[:, :, top : height - bottom, left : width - right]
        if meta.get("flip"):
            direction = meta.get("flip_direction")
            if direction not in FLIP_DIRECTIONS:
                raise ValueError(
                    f"cannot undo flip_direction={direction!r}; choose one of {FLIP_DIRECTIONS}"
                )
            logits = logits.flip(dims=(3,) if direction == "horizontal" else (2,))
        if "ori_shape" not in meta:
            raise KeyError(
                f"data sample metainfo has no 'ori_shape' (keys: {sorted(meta)}); "
                "PackSegInputs puts it there"
            )
        size = tuple(meta["ori_shape"][:2])
        return resize(
            logits, size, mode="bilinear", align_corners=self.align_corners, warning=False
        ).squeeze(0)


# ----------------------------------------------------------------------------- encoder-decoder
@MODELS.register_module()
class EncoderDecoder(BaseSegmentor):
    """Backbone, optional neck, decode head and optional auxiliary head(s).

    ``train_cfg`` is handed to the heads' ``loss`` (PointRend reads its point sampling
    there); ``test_cfg`` chooses whole or slide inference. ``pretrained`` is the deprecated
    spelling of the backbone's ``pretrained``.
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        decode_head: dict | list[dict] | nn.Module,
        neck: dict | nn.Module | None = None,
        auxiliary_head: dict | list[dict] | nn.Module | None = None,
        train_cfg: dict | None = None,
        test_cfg: dict | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if pretrained is not None:
            backbone = _backbone_with_pretrained(backbone, pretrained)
        self.backbone = _build(backbone, "model.backbone")
        if neck is not None:
            self.neck = _build(neck, "model.neck")
        self._init_decode_head(decode_head)
        self._init_auxiliary_head(auxiliary_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        _check_test_cfg(test_cfg)

    def _init_decode_head(self, decode_head: dict | list[dict] | nn.Module) -> None:
        if isinstance(decode_head, (list, tuple)):
            raise TypeError(
                "EncoderDecoder takes one decode_head; a list of heads needs "
                "type='CascadeEncoderDecoder' with num_stages"
            )
        self.decode_head = _build(decode_head, "model.decode_head")
        self.align_corners = self.decode_head.align_corners
        self.num_classes = self.decode_head.num_classes
        self.out_channels = self.decode_head.out_channels

    def _init_auxiliary_head(self, auxiliary_head: dict | list[dict] | nn.Module | None) -> None:
        if auxiliary_head is None:
            return
        if isinstance(auxiliary_head, (list, tuple)):
            self.auxiliary_head = nn.ModuleList(
                _build(cfg, f"model.auxiliary_head[{i}]") for i, cfg in enumerate(auxiliary_head)
            )
        else:
            self.auxiliary_head = _build(auxiliary_head, "model.auxiliary_head")

    # ------------------------------------------------------------------ features
    def extract_feat(self, inputs: torch.Tensor) -> Any:
        """Backbone (then neck) features."""
        x = self.backbone(inputs)
        return self.neck(x) if self.with_neck else x

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        """Logits at the size of ``inputs`` (as the metainfo says)."""
        return self.decode_head.predict(self.extract_feat(inputs), batch_img_metas, self.test_cfg)

    def _forward(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample] | None = None
    ) -> torch.Tensor:
        return self.decode_head.forward(self.extract_feat(inputs))

    # ------------------------------------------------------------------ training
    def _decode_head_forward_train(
        self, inputs: Any, data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        return add_prefix(self.decode_head.loss(inputs, data_samples, self.train_cfg), "decode")

    def _auxiliary_head_forward_train(
        self, inputs: Any, data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        if isinstance(self.auxiliary_head, nn.ModuleList):
            losses: dict[str, torch.Tensor] = {}
            for i, head in enumerate(self.auxiliary_head):
                losses.update(
                    add_prefix(head.loss(inputs, data_samples, self.train_cfg), f"aux_{i}")
                )
            return losses
        return add_prefix(self.auxiliary_head.loss(inputs, data_samples, self.train_cfg), "aux")

    def loss(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        x = self.extract_feat(inputs)
        losses = self._decode_head_forward_train(x, data_samples)
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(x, data_samples))
        return losses

    # ------------------------------------------------------------------ inference
    def predict(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample] | None = None
    ) -> list[DataSample]:
        if data_samples is not None:
            batch_img_metas = [s.metainfo for s in data_samples]
        else:
            shape = inputs.shape[2:]
            batch_img_metas = [
                dict(ori_shape=shape, img_shape=shape, pad_shape=shape, padding_size=[0, 0, 0, 0])
                for _ in range(inputs.shape[0])
            ]
        seg_logits = self.inference(inputs, batch_img_metas)
        return self.postprocess_result(seg_logits, data_samples)

    def inference(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        """Logits ``(N, out_channels, H, W)`` at the input size, whole or sliding-window."""
        mode = _check_test_cfg(self.test_cfg)
        ori_shape = batch_img_metas[0].get("ori_shape")
        if any(m.get("ori_shape") != ori_shape for m in batch_img_metas):
            warnings.warn("Image shapes are different in the batch.", stacklevel=2)
        if mode == "slide":
            return self.slide_inference(inputs, batch_img_metas)
        return self.whole_inference(inputs, batch_img_metas)

    def whole_inference(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        return self.encode_decode(inputs, batch_img_metas)

    def slide_inference(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        """Average the logits of ``crop_size`` windows placed every ``stride``; the last
        window of a row/column is shifted back inside the image, and an image smaller than
        the crop is one window."""
        crop_size = cfg_value(self.test_cfg, "crop_size", where="model.test_cfg (slide)")
        stride = cfg_value(self.test_cfg, "stride", where="model.test_cfg (slide)")
        batch_size, _, h_img, w_img = inputs.shape
        preds = inputs.new_zeros((batch_size, self.out_channels, h_img, w_img))
        count = inputs.new_zeros((batch_size, 1, h_img, w_img))
        for y1, y2, x1, x2 in slide_windows((h_img, w_img), crop_size, stride):
            crop = inputs[:, :, y1:y2, x1:x2]
            # The head resizes to img_shape; a torch.Size marks it as a crop (MMSegmentation).
            crop_metas = [{**m, "img_shape": crop.shape[2:]} for m in batch_img_metas]
            crop_logits = self.encode_decode(crop, crop_metas)
            preds += F.pad(crop_logits, (x1, w_img - x2, y1, h_img - y2))
            count[:, :, y1:y2, x1:x2] += 1
        if (count == 0).any():
            raise RuntimeError(
                f"slide inference left pixels uncovered (crop {crop_size}, stride {stride})"
            )
        return preds / count


@MODELS.register_module()
class CascadeEncoderDecoder(EncoderDecoder):
    """``num_stages`` decode heads, each refining the previous one's output (PointRend:
    ``FPNHead`` then ``PointHead``). Losses are prefixed ``decode_{i}.``; prediction comes
    from the last stage."""

    def __init__(
        self,
        num_stages: int,
        backbone: dict | nn.Module,
        decode_head: list[dict | nn.Module],
        neck: dict | nn.Module | None = None,
        auxiliary_head: dict | list[dict] | nn.Module | None = None,
        train_cfg: dict | None = None,
        test_cfg: dict | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        self.num_stages = num_stages
        super().__init__(
            backbone=backbone, decode_head=decode_head, neck=neck, auxiliary_head=auxiliary_head,
            train_cfg=train_cfg, test_cfg=test_cfg, data_preprocessor=data_preprocessor,
            pretrained=pretrained, init_cfg=init_cfg,
        )  # fmt: skip

    def _init_decode_head(self, decode_head: list[dict | nn.Module]) -> None:  # type: ignore[override]
        if not isinstance(decode_head, (list, tuple)) or len(decode_head) != self.num_stages:
            raise ValueError(
                f"CascadeEncoderDecoder needs decode_head as a list of num_stages="
                f"{self.num_stages} heads, got {type(decode_head).__name__}"
                + (
                    f" of length {len(decode_head)}"
                    if isinstance(decode_head, (list, tuple))
                    else ""
                )
            )
        self.decode_head = nn.ModuleList(
            _build(cfg, f"model.decode_head[{i}]") for i, cfg in enumerate(decode_head)
        )
        last = self.decode_head[-1]
        self.align_corners, self.num_classes = last.align_corners, last.num_classes
        self.out_channels = last.out_channels

    def _prediction_head(self) -> nn.Module:
        return self.decode_head[-1]

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        x = self.extract_feat(inputs)
        out = self.decode_head[0].forward(x)
        for i in range(1, self.num_stages - 1):
            out = self.decode_head[i].forward(x, out)
        return self.decode_head[-1].predict(x, out, batch_img_metas, self.test_cfg)

    def _forward(
        self, inputs: torch.Tensor, data_samples: Sequence[DataSample] | None = None
    ) -> torch.Tensor:
        x = self.extract_feat(inputs)
        out = self.decode_head[0].forward(x)
        for i in range(1, self.num_stages):
            out = self.decode_head[i].forward_tensor(x, out, self.test_cfg)
        return out

    def _decode_head_forward_train(
        self, inputs: Any, data_samples: Sequence[DataSample]
    ) -> dict[str, torch.Tensor]:
        losses = add_prefix(
            self.decode_head[0].loss(inputs, data_samples, self.train_cfg), "decode_0"
        )
        prev_outputs = None
        for i in range(1, self.num_stages):
            # The previous stage runs again in its plain forward, as MMSegmentation does.
            if i == 1:
                prev_outputs = self.decode_head[0].forward(inputs)
            else:
                prev_outputs = self.decode_head[i - 1].forward(inputs, prev_outputs)
            stage_losses = self.decode_head[i].loss(
                inputs, prev_outputs, data_samples, self.train_cfg
            )
            losses.update(add_prefix(stage_losses, f"decode_{i}"))
        return losses


# ----------------------------------------------------------------------------- helpers
def slide_windows(
    image_size: tuple[int, int], crop_size: Sequence[int], stride: Sequence[int]
) -> list[tuple[int, int, int, int]]:
    """The ``(y1, y2, x1, x2)`` windows of MMSegmentation's slide inference."""
    (h_img, w_img), (h_crop, w_crop), (h_stride, w_stride) = image_size, crop_size, stride
    if min(h_crop, w_crop, h_stride, w_stride) <= 0:
        raise ValueError(f"slide crop_size {crop_size} and stride {stride} must be positive")
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    windows = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y2 = min(h_idx * h_stride + h_crop, h_img)
            x2 = min(w_idx * w_stride + w_crop, w_img)
            windows.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return windows


def _check_test_cfg(test_cfg: Any) -> str:
    """The inference mode, after checking ``test_cfg`` names a known one with its keys."""
    mode = cfg_value(test_cfg, "mode", "whole") if test_cfg is not None else "whole"
    if mode not in TEST_MODES:
        raise ValueError(
            f'Only "slide" or "whole" test mode are supported, but got {mode!r} '
            "(model.test_cfg.mode)"
        )
    if mode == "slide":
        for key in ("crop_size", "stride"):
            value = cfg_value(test_cfg, key, where="model.test_cfg with mode='slide'")
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ValueError(f"model.test_cfg.{key} must be (h, w), got {value!r}")
    return mode


def _build(cfg: dict | nn.Module, key_path: str) -> nn.Module:
    if isinstance(cfg, nn.Module):
        return cfg
    return MODELS.build(cfg, key_path=key_path)


def _backbone_with_pretrained(backbone: dict | nn.Module, pretrained: str) -> dict:
    if isinstance(backbone, nn.Module):
        raise TypeError("pretrained= needs the backbone as a config dict, not a built module")
    if backbone.get("pretrained") is not None:
        raise ValueError("both backbone and segmentor set pretrained weight")
    return {**backbone, "pretrained": pretrained}


def _preprocessor_cfg(data_preprocessor: dict | nn.Module | None) -> dict | nn.Module:
    if isinstance(data_preprocessor, nn.Module):
        return data_preprocessor
    if data_preprocessor is not None and not isinstance(data_preprocessor, Mapping):
        raise TypeError(
            f"data_preprocessor must be a dict or an nn.Module, got {type(data_preprocessor).__name__}"
        )
    cfg = copy.deepcopy(dict(data_preprocessor or {}))
    cfg.setdefault("type", "SegDataPreProcessor")
    return cfg
