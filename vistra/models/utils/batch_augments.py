"""Batch augmentations (MMPretrain's ``Mixup``, ``CutMix``, ``ResizeMix``,
``RandomBatchAugment``, and MMClassification 0.x's ``BatchMixup``, ``BatchCutMix``,
``BatchResizeMix``, which configs of the MMPretrain wheel still name).

They run inside the data preprocessor, on the device, during training only, and take and
return ``(inputs (N, C, H, W), scores (N, num_classes))``: the mixed one-hot scores become
the samples' ``gt_score`` soft labels. Randomness comes from numpy's and torch's global
generators, which vistra seeds and checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vistra.registry import MODELS


def _check_scores(batch_score: torch.Tensor) -> None:
    if batch_score.ndim != 2:
        raise ValueError(
            f"batch augments need one-hot scores shaped (N, num_classes), got {tuple(batch_score.shape)}"
        )


@MODELS.register_module()
class Mixup:
    """Blend each image and its scores with another one of the batch:
    ``lam * x + (1 - lam) * x[perm]``, ``lam ~ Beta(alpha, alpha)``."""

    def __init__(self, alpha: float) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ValueError(
                f"{type(self).__name__} alpha must be a positive number, got {alpha!r}"
            )
        self.alpha = float(alpha)

    def mix(
        self, batch_inputs: torch.Tensor, batch_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lam = float(np.random.beta(self.alpha, self.alpha))
        index = torch.randperm(batch_inputs.size(0)).to(batch_inputs.device)
        mixed_inputs = lam * batch_inputs + (1 - lam) * batch_inputs[index]
        mixed_scores = lam * batch_scores + (1 - lam) * batch_scores[index]
        return mixed_inputs, mixed_scores

    def __call__(
        self, batch_inputs: torch.Tensor, batch_score: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_scores(batch_score)
        return self.mix(batch_inputs, batch_score.float())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha})"


@MODELS.register_module()
class CutMix(Mixup):
    """Paste a box from another image of the batch; scores mix by the pasted area.

    The box side is ``sqrt(1 - lam)`` of the image (``lam ~ Beta(alpha, alpha)``), or drawn
    uniformly in ``cutmix_minmax`` fractions of each side. ``correct_lam`` recomputes
    ``lam`` from the box after it is clipped at the border (always done with minmax).
    """

    def __init__(
        self, alpha: float, cutmix_minmax: Sequence[float] | None = None, correct_lam: bool = True
    ) -> None:
        super().__init__(alpha)
        if cutmix_minmax is not None and (
            len(cutmix_minmax) != 2 or not 0 < cutmix_minmax[0] < cutmix_minmax[1] <= 1
        ):
            raise ValueError(
                f"cutmix_minmax must be (min, max) with 0 < min < max <= 1, got {cutmix_minmax!r}"
            )
        self.cutmix_minmax = cutmix_minmax
        self.correct_lam = correct_lam

    def rand_bbox_minmax(self, img_shape: tuple[int, int]) -> tuple[int, int, int, int]:
        h, w = img_shape
        lo, hi = self.cutmix_minmax  # type: ignore[misc]
        cut_h = np.random.randint(int(h * lo), max(int(h * hi), int(h * lo) + 1))
        cut_w = np.random.randint(int(w * lo), max(int(w * hi), int(w * lo) + 1))
        yl = np.random.randint(0, h - cut_h + 1)
        xl = np.random.randint(0, w - cut_w + 1)
        return yl, yl + cut_h, xl, xl + cut_w

    def rand_bbox(
        self, img_shape: tuple[int, int], lam: float, margin: float = 0.0
    ) -> tuple[int, int, int, int]:
        ratio = np.sqrt(1 - lam)
        h, w = img_shape
        cut_h, cut_w = int(h * ratio), int(w * ratio)
        margin_y, margin_x = int(margin * cut_h), int(margin * cut_w)
        cy = np.random.randint(margin_y, h - margin_y)
        cx = np.random.randint(margin_x, w - margin_x)
        yl, yh = np.clip(cy - cut_h // 2, 0, h), np.clip(cy + cut_h // 2, 0, h)
        xl, xh = np.clip(cx - cut_w // 2, 0, w), np.clip(cx + cut_w // 2, 0, w)
        return int(yl), int(yh), int(xl), int(xh)

    def cutmix_bbox_and_lam(
        self, img_shape: tuple[int, int], lam: float
    ) -> tuple[tuple[int, int, int, int], float]:
        if self.cutmix_minmax is not None:
            box = self.rand_bbox_minmax(img_shape)
        else:
            box = self.rand_bbox(img_shape, lam)
        if self.correct_lam or self.cutmix_minmax is not None:
            yl, yu, xl, xu = box
            lam = 1.0 - (yu - yl) * (xu - xl) / float(img_shape[0] * img_shape[1])
        return box, lam

    def mix(
        self, batch_inputs: torch.Tensor, batch_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lam = float(np.random.beta(self.alpha, self.alpha))
        index = torch.randperm(batch_inputs.size(0)).to(batch_inputs.device)
        (y1, y2, x1, x2), lam = self.cutmix_bbox_and_lam(tuple(batch_inputs.shape[-2:]), lam)
        batch_inputs = batch_inputs.clone()
        batch_inputs[:, :, y1:y2, x1:x2] = batch_inputs[index, :, y1:y2, x1:x2]
        mixed_scores = lam * batch_scores + (1 - lam) * batch_scores[index]
        return batch_inputs, mixed_scores


@MODELS.register_module()
class ResizeMix(CutMix):
    """`ResizeMix <https://arxiv.org/abs/2012.11101>`_: shrink another image of the batch
    into a box and paste it whole; scores mix by the box's area.

    ``lam ~ Beta(alpha, alpha)`` is rescaled into ``[lam_min, lam_max]`` and sizes the box as
    CutMix does (side ``sqrt(1 - lam)`` of the image, clipped, ``lam`` corrected).
    """

    def __init__(
        self,
        alpha: float,
        lam_min: float = 0.1,
        lam_max: float = 0.8,
        interpolation: str = "bilinear",
        cutmix_minmax: Sequence[float] | None = None,
        correct_lam: bool = True,
    ) -> None:
        super().__init__(alpha, cutmix_minmax, correct_lam)
        if not 0 <= lam_min <= lam_max <= 1:
            raise ValueError(
                f"ResizeMix needs 0 <= lam_min <= lam_max <= 1, got {lam_min!r}, {lam_max!r}"
            )
        if interpolation not in ("nearest", "bilinear", "bicubic", "area"):
            raise ValueError(
                f"ResizeMix interpolation={interpolation!r}; valid: 'nearest', 'bilinear', "
                "'bicubic', 'area'"
            )
        self.lam_min, self.lam_max, self.interpolation = lam_min, lam_max, interpolation

    def mix(
        self, batch_inputs: torch.Tensor, batch_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lam = float(np.random.beta(self.alpha, self.alpha))
        lam = lam * (self.lam_max - self.lam_min) + self.lam_min
        index = torch.randperm(batch_inputs.size(0)).to(batch_inputs.device)
        (y1, y2, x1, x2), lam = self.cutmix_bbox_and_lam(tuple(batch_inputs.shape[-2:]), lam)
        batch_inputs = batch_inputs.clone()
        if y2 > y1 and x2 > x1:
            align = (
                False if self.interpolation != "nearest" and self.interpolation != "area" else None
            )
            batch_inputs[:, :, y1:y2, x1:x2] = F.interpolate(
                batch_inputs[index], size=(y2 - y1, x2 - x1), mode=self.interpolation,
                align_corners=align,
            )  # fmt: skip
        mixed_scores = lam * batch_scores + (1 - lam) * batch_scores[index]
        return batch_inputs, mixed_scores


class _LegacyBatchAugment:
    """MMClassification 0.x's batch-augment layers: the 1.x augment with ``num_classes``
    (checked against the scores' width) and ``prob`` (the chance to mix a batch at all)."""

    def _legacy_init(self, num_classes: int, prob: float) -> None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(
                f"{type(self).__name__} num_classes must be a positive int, got {num_classes!r}"
            )
        if not 0 <= prob <= 1:
            raise ValueError(f"{type(self).__name__} prob must be in [0, 1], got {prob!r}")
        self.num_classes, self.prob = num_classes, float(prob)

    def __call__(
        self, batch_inputs: torch.Tensor, batch_score: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_scores(batch_score)
        if batch_score.size(1) != self.num_classes:
            raise ValueError(
                f"{type(self).__name__}(num_classes={self.num_classes}) got scores for "
                f"{batch_score.size(1)} classes: set num_classes to the model's"
            )
        if np.random.rand() >= self.prob:
            return batch_inputs, batch_score.float()
        return self.mix(batch_inputs, batch_score.float())  # type: ignore[attr-defined]


@MODELS.register_module()
class BatchMixup(_LegacyBatchAugment, Mixup):
    """0.x ``BatchMixup(alpha, num_classes, prob)``: :class:`Mixup` with probability ``prob``."""

    def __init__(self, alpha: float, num_classes: int, prob: float = 1.0) -> None:
        Mixup.__init__(self, alpha)
        self._legacy_init(num_classes, prob)


@MODELS.register_module()
class BatchCutMix(_LegacyBatchAugment, CutMix):
    """0.x ``BatchCutMix``: :class:`CutMix` with probability ``prob``."""

    def __init__(
        self,
        alpha: float,
        num_classes: int,
        prob: float = 1.0,
        cutmix_minmax: Sequence[float] | None = None,
        correct_lam: bool = True,
    ) -> None:
        CutMix.__init__(self, alpha, cutmix_minmax, correct_lam)
        self._legacy_init(num_classes, prob)


@MODELS.register_module()
class BatchResizeMix(_LegacyBatchAugment, ResizeMix):
    """0.x ``BatchResizeMix``: :class:`ResizeMix` with probability ``prob``."""

    def __init__(
        self,
        alpha: float,
        num_classes: int,
        lam_min: float = 0.1,
        lam_max: float = 0.8,
        interpolation: str = "bilinear",
        prob: float = 1.0,
        cutmix_minmax: Sequence[float] | None = None,
        correct_lam: bool = True,
    ) -> None:
        ResizeMix.__init__(self, alpha, lam_min, lam_max, interpolation, cutmix_minmax, correct_lam)
        self._legacy_init(num_classes, prob)


class RandomBatchAugment:
    """Apply one of ``augments``, picked with ``probs`` (evenly when None).

    When ``probs`` sum to less than 1, the remainder is the chance to apply none.
    """

    def __init__(
        self,
        augments: dict | Callable | Sequence[dict | Callable],
        probs: float | Sequence[float] | None = None,
    ) -> None:
        if not isinstance(augments, (list, tuple)):
            augments = [augments]
        self.augments: list[Callable | None] = [
            MODELS.build(a, key_path="data_preprocessor.batch_augments")
            if isinstance(a, dict)
            else a
            for a in augments
        ]
        if isinstance(probs, (int, float)):
            probs = [float(probs)]
        if probs is not None:
            probs = [float(p) for p in probs]
            if len(probs) != len(self.augments):
                raise ValueError(
                    f"batch augments and probs must have the same length, got {len(self.augments)} vs {len(probs)}"
                )
            if any(p < 0 for p in probs) or sum(probs) > 1 + 1e-6:
                raise ValueError(
                    f"batch augment probs must be >= 0 and sum to at most 1, got {probs}"
                )
            self.augments.append(None)
            probs.append(max(0.0, 1 - sum(probs)))
            probs = [p / sum(probs) for p in probs]  # exact sum for numpy
        self.probs = probs

    def __call__(
        self, batch_input: torch.Tensor, batch_score: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        aug = self.augments[np.random.choice(len(self.augments), p=self.probs)]
        if aug is None:
            return batch_input, batch_score.float()
        return aug(batch_input, batch_score)

    def __repr__(self) -> str:
        return f"RandomBatchAugment(augments={self.augments}, probs={self.probs})"
