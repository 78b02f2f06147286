"""Helpers shared by the segmentation models, with MMSegmentation 1.x's names and maths.

- ``resize`` / ``Upsample``: ``F.interpolate`` with MMSegmentation's ``align_corners`` hint;
- ``add_prefix``: ``{'loss_ce': x}`` -> ``{'decode.loss_ce': x}``, how segmentors name the
  losses of each head;
- ``accuracy``: the ``acc_seg`` / ``acc_point`` percentage, ignoring ``ignore_index``;
- point sampling for PointRend (``point_sample`` on ``F.grid_sample``, uncertainty-based
  train/test point selection), written in plain torch instead of MMCV's compiled ops;
- pixel samplers (``OHEMPixelSampler``), registered in ``TASK_UTILS`` as MMSegmentation does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vistra.registry import TASK_UTILS

_REQUIRED = object()


# ----------------------------------------------------------------------------- small helpers
def add_prefix(inputs: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Prefix every key with ``'<prefix>.'`` (``loss_ce`` -> ``decode.loss_ce``)."""
    return {f"{prefix}.{name}": value for name, value in inputs.items()}


def cfg_value(cfg: Any, key: str, default: Any = _REQUIRED, where: str = "cfg") -> Any:
    """``cfg[key]`` for a dict or a ConfigDict-like object; a missing required key is an
    error that names ``where`` (e.g. ``'model.train_cfg'``) and the key."""
    if isinstance(cfg, Mapping):
        if key in cfg:
            return cfg[key]
    elif cfg is not None and hasattr(cfg, key):
        return getattr(cfg, key)
    if default is _REQUIRED:
        shown = sorted(cfg) if isinstance(cfg, Mapping) else cfg
        raise KeyError(f"{where} needs the key {key!r}; got {shown}")
    return default


# ----------------------------------------------------------------------------- resizing
def resize(
    input: torch.Tensor,  # noqa: A002 (MMSegmentation's argument name)
    size: Sequence[int] | torch.Size | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    warning: bool = True,
) -> torch.Tensor:
    """``F.interpolate``, warning when ``align_corners=True`` would align better with an
    ``x+1`` -> ``nx+1`` size pair (MMSegmentation's hint)."""
    if warning and size is not None and align_corners:
        in_h, in_w = (int(v) for v in input.shape[2:])
        out_h, out_w = (int(v) for v in size)
        if (
            (out_h > in_h or out_w > in_w)
            and out_h > 1
            and out_w > 1
            and in_h > 1
            and in_w > 1
            and (out_h - 1) % (in_h - 1)
            and (out_w - 1) % (in_w - 1)
        ):
            warnings.warn(
                f"When align_corners={align_corners}, the output would be more aligned if "
                f"input size {(in_h, in_w)} is `x+1` and out size {(out_h, out_w)} is `nx+1`",
                stacklevel=2,
            )
    if size is not None:
        size = tuple(int(v) for v in size)
    return F.interpolate(input, size, scale_factor, mode, align_corners)


class Upsample(nn.Module):
    """``resize`` as a module; with ``scale_factor`` the output size is
    ``int(in * scale_factor)`` (MMSegmentation's wrapper, used by FPNHead and InterpConv)."""

    def __init__(
        self,
        size: Sequence[int] | None = None,
        scale_factor: float | Sequence[float] | None = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
    ) -> None:
        super().__init__()
        if size is None and not scale_factor:
            raise ValueError("Upsample needs size or scale_factor")
        self.size = size
        if isinstance(scale_factor, (tuple, list)):
            self.scale_factor: Any = tuple(float(f) for f in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.size
        if not size:
            factors = (
                self.scale_factor
                if isinstance(self.scale_factor, tuple)
                else (self.scale_factor, self.scale_factor)
            )
            size = [int(t * f) for t, f in zip(x.shape[-2:], factors)]
        return resize(x, size, None, self.mode, self.align_corners)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale_factor={self.scale_factor}, mode={self.mode!r}"


# ----------------------------------------------------------------------------- accuracy
def accuracy(
    pred: torch.Tensor,
    target: torch.Tensor,
    topk: int | tuple[int, ...] = 1,
    thresh: float | None = None,
    ignore_index: int | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """Top-k accuracy in percent of ``pred`` ``(N, C, ...)`` against ``target`` ``(N, ...)``.

    Pixels labelled ``ignore_index`` count neither as hits nor in the total. An eps in
    both terms avoids a division by zero: an all-ignored batch reads 100 (MMSegmentation's
    formula), not NaN.
    """
    single = isinstance(topk, int)
    ks = (topk,) if single else tuple(topk)
    if pred.size(0) == 0:
        zeros = [pred.new_tensor(0.0) for _ in ks]
        return zeros[0] if single else zeros
    if pred.dim() != target.dim() + 1 or pred.size(0) != target.size(0):
        raise ValueError(
            f"accuracy needs scores (N, C, ...) and labels (N, ...), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    maxk = max(ks)
    if maxk > pred.size(1):
        raise ValueError(f"topk {maxk} exceeds the {pred.size(1)} classes of the prediction")
    pred_value, pred_label = pred.topk(maxk, dim=1)
    pred_label = pred_label.transpose(0, 1)  # (maxk, N, ...)
    correct = pred_label.eq(target.unsqueeze(0).expand_as(pred_label))
    if thresh is not None:
        correct = correct & (pred_value > thresh).transpose(0, 1)
    if ignore_index is not None:
        keep = target != ignore_index
        correct = correct[:, keep]
        total = int(keep.sum())
    else:
        total = target.numel()
    eps = torch.finfo(torch.float32).eps
    res = [
        (correct[:k].reshape(-1).float().sum(0, keepdim=True) + eps) * (100.0 / (total + eps))
        for k in ks
    ]
    return res[0] if single else res


# ----------------------------------------------------------------------------- point sampling
def point_sample(
    input: torch.Tensor,  # noqa: A002 (MMCV's argument name)
    points: torch.Tensor,
    align_corners: bool = False,
    **kwargs: Any,
) -> torch.Tensor:
    """Sample ``input`` ``(N, C, H, W)`` at ``points`` in ``[0, 1] x [0, 1]`` (x, y) order.

    ``points`` ``(N, P, 2)`` gives ``(N, C, P)``; ``(N, Hg, Wg, 2)`` gives ``(N, C, Hg, Wg)``.
    ``kwargs`` go to ``F.grid_sample`` (``mode='nearest'`` for labels).
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    out = F.grid_sample(input, points * 2.0 - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if add_dim else out


def calculate_uncertainty(seg_logits: torch.Tensor) -> torch.Tensor:
    """Minus the gap between the two largest logits of each location, ``(N, 1, ...)``:
    the closer the top two classes, the more uncertain (the higher the score)."""
    top2 = torch.topk(seg_logits, k=2, dim=1)[0]
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


def sample_points_train(
    seg_logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor] = calculate_uncertainty,
) -> torch.Tensor:
    """PointRend's training points ``(N, num_points, 2)`` in ``[0, 1]``.

    ``num_points * oversample_ratio`` random points are drawn; the
    ``importance_sample_ratio`` share of ``num_points`` most uncertain of them (uncertainty
    measured on the *interpolated* logits) is kept, and the rest is filled with new random
    points.
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(
            f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}"
        )
    batch_size, device = seg_logits.shape[0], seg_logits.device
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(batch_size, num_sampled, 2, device=device)
    uncertainties = uncertainty_func(point_sample(seg_logits, coords))
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    idx = torch.topk(uncertainties[:, 0, :], k=num_uncertain, dim=1)[1]
    coords = torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        coords = torch.cat((coords, torch.rand(batch_size, num_random, 2, device=device)), dim=1)
    return coords


def sample_points_test(
    seg_logits: torch.Tensor,
    num_points: int,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor] = calculate_uncertainty,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``num_points`` most uncertain cells of the ``H x W`` grid: their flat indices
    ``(N, P)`` and their centres ``(N, P, 2)`` in ``[0, 1]`` (x, y)."""
    uncertainty = uncertainty_func(seg_logits)
    batch_size, _, height, width = uncertainty.shape
    num_points = min(height * width, num_points)
    indices = uncertainty.view(batch_size, height * width).topk(num_points, dim=1)[1]
    coords = torch.zeros(batch_size, num_points, 2, dtype=torch.float, device=seg_logits.device)
    coords[:, :, 0] = 0.5 / width + (indices % width).float() / width
    coords[:, :, 1] = (
        0.5 / height + torch.div(indices, width, rounding_mode="floor").float() / height
    )
    return indices, coords


# ----------------------------------------------------------------------------- pixel samplers
class BasePixelSampler:
    """A pixel sampler returns per-pixel loss weights ``(N, H, W)`` from the logits and
    the label map ``(N, 1, H, W)``; MMSegmentation's base class, kept so custom samplers port."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def sample(self, seg_logit: torch.Tensor, seg_label: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@TASK_UTILS.register_module()
class OHEMPixelSampler(BasePixelSampler):
    """Online hard example mining over pixels (`paper <https://arxiv.org/abs/1604.03540>`_).

    ``context`` is the decode head (for its ``ignore_index`` and losses). With ``thresh``,
    pixels whose ground-truth probability is below ``max(thresh, p_k)`` are kept, ``p_k``
    being the ``min_kept * N``-th lowest probability, so at least that many stay. Without
    it, the ``min_kept * N`` pixels with the highest loss are kept. Ignored pixels get 0.
    """

    def __init__(self, context: nn.Module, thresh: float | None = None, min_kept: int = 100000):
        super().__init__()
        if min_kept <= 1:
            raise ValueError(f"OHEMPixelSampler min_kept must be > 1, got {min_kept}")
        self.context, self.thresh, self.min_kept = context, thresh, min_kept

    def sample(self, seg_logit: torch.Tensor, seg_label: torch.Tensor) -> torch.Tensor:
        if seg_logit.shape[2:] != seg_label.shape[2:] or seg_label.shape[1] != 1:
            raise ValueError(
                f"OHEM needs logits (N, C, H, W) and labels (N, 1, H, W) of one size, got "
                f"{tuple(seg_logit.shape)} and {tuple(seg_label.shape)}"
            )
        with torch.no_grad():
            label = seg_label.squeeze(1).long()
            ignore_index = self.context.ignore_index
            batch_kept = self.min_kept * label.size(0)
            valid = label != ignore_index
            seg_weight = seg_logit.new_zeros(label.size())
            valid_weight = seg_weight[valid]
            if self.thresh is not None:
                gt_prob = _ground_truth_prob(seg_logit, label, ignore_index)[valid]
                sort_prob = gt_prob.sort()[0]
                min_threshold = (
                    float(sort_prob[min(batch_kept, sort_prob.numel() - 1)])
                    if sort_prob.numel()
                    else 0.0
                )
                valid_weight[gt_prob < max(min_threshold, self.thresh)] = 1.0
            else:
                losses = self._pixel_losses(seg_logit, label)
                order = losses[valid].sort(descending=True)[1]
                valid_weight[order[:batch_kept]] = 1.0
            seg_weight[valid] = valid_weight
        return seg_weight

    def _pixel_losses(self, seg_logit: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        losses_decode = self.context.loss_decode
        modules = losses_decode if isinstance(losses_decode, nn.ModuleList) else [losses_decode]
        total = seg_logit.new_zeros(label.shape)
        for loss_module in modules:
            total = total + loss_module(
                seg_logit, label, weight=None, ignore_index=self.context.ignore_index,
                reduction_override="none",
            )  # fmt: skip
        return total


def _ground_truth_prob(
    seg_logit: torch.Tensor, label: torch.Tensor, ignore_index: int
) -> torch.Tensor:
    """Softmax probability of each pixel's labelled class (ignored pixels read class 0)."""
    safe = torch.where(label == ignore_index, torch.zeros_like(label), label)
    return F.softmax(seg_logit, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)


def build_pixel_sampler(cfg: dict, **default_args: Any) -> BasePixelSampler:
    """Build a pixel sampler from ``TASK_UTILS`` (``context=`` is the decode head)."""
    return TASK_UTILS.build(cfg, default_args=default_args, key_path="sampler")
