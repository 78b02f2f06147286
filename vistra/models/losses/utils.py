"""Loss reductions and label helpers shared by every loss (pure functions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str | None, what: str = "reduction") -> None:
    if reduction is not None and reduction not in REDUCTIONS:
        raise ValueError(f"{what} must be one of {REDUCTIONS}, got {reduction!r}")


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """``'none'`` keeps the element-wise loss, ``'mean'``/``'sum'`` reduce it to a scalar."""
    check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def weight_reduce_loss(
    loss: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Multiply by an element-wise ``weight``, then reduce.

    With ``avg_factor`` and ``'mean'``, the sum is divided by ``avg_factor`` instead of the
    element count (plus float32 eps, so an all-ignored batch gives 0 rather than NaN, as
    MMSegmentation does); ``avg_factor`` with ``'sum'`` is an error.
    """
    if weight is not None:
        if weight.dim() != loss.dim():
            raise ValueError(f"loss weight has {weight.dim()} dims but the loss has {loss.dim()}")
        if weight.dim() > 1 and weight.size(1) not in (1, loss.size(1)):
            raise ValueError(
                f"loss weight shape {tuple(weight.shape)} does not fit loss shape {tuple(loss.shape)}"
            )
        loss = loss * weight
    if avg_factor is None:
        return reduce_loss(loss, reduction)
    check_reduction(reduction)
    if reduction == "mean":
        return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    if reduction == "sum":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss


def convert_to_one_hot(targets: torch.Tensor, classes: int) -> torch.Tensor:
    """``(N,)`` or ``(N, 1)`` class indices -> ``(N, classes)`` long one-hot."""
    targets = targets.reshape(-1).long()
    if targets.numel() and (targets.min() < 0 or targets.max() >= classes):
        raise ValueError(
            f"labels must be in [0, {classes}), got min {int(targets.min())} max {int(targets.max())}"
        )
    return F.one_hot(targets, classes)


def get_class_weight(class_weight: Sequence[float] | str | None) -> list[float] | None:
    """Class weights as a list; a string is read as a ``.npy`` or ``.json`` file (as
    MMSegmentation's ``class_weight='weights.npy'``)."""
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        path = Path(class_weight)
        if not path.is_file():
            raise FileNotFoundError(f"class_weight file {class_weight!r} does not exist")
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False).astype(float).reshape(-1).tolist()
        if path.suffix == ".json":
            return [float(v) for v in json.loads(path.read_text())]
        raise ValueError(f"class_weight file {class_weight!r} must be .npy or .json")
    if isinstance(class_weight, (torch.Tensor, np.ndarray)):
        return [float(v) for v in class_weight.reshape(-1).tolist()]
    return [float(v) for v in class_weight]
