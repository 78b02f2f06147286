"""Stochastic depth (``DropPath``) and dropout by MMCV's config names."""

from __future__ import annotations

import torch
from torch import nn

from vistra.registry import MODELS


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero each sample's (first dimension's) branch with probability ``drop_prob`` and
    scale the rest by ``1 / keep``, drawing one uniform number per sample as MMCV's
    ``DropPath`` does (so a seeded run masks the same samples). Written here rather than
    taken from ``torchvision.ops``: importing torchvision costs every process ~1.5 s."""
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
    return x.div(keep) * mask


@MODELS.register_module()
class DropPath(nn.Module):
    """Drop whole residual branches per sample with probability ``drop_prob`` in training,
    scaling the kept ones by ``1 / (1 - drop_prob)`` so the expectation is unchanged."""

    def __init__(self, drop_prob: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"DropPath drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        return drop_path(x, self.drop_prob)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


@MODELS.register_module()
class Dropout(nn.Dropout):
    """``nn.Dropout`` taking MMCV's argument name ``drop_prob``."""

    def __init__(self, drop_prob: float = 0.5, inplace: bool = False) -> None:
        super().__init__(p=drop_prob, inplace=inplace)


def build_dropout(cfg: dict) -> nn.Module:
    """Build ``dict(type='DropPath' | 'Dropout', drop_prob=...)``."""
    return MODELS.build(cfg, key_path="dropout_layer")
