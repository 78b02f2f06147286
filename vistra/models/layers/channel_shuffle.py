"""``channel_shuffle`` (`ShuffleNet <https://arxiv.org/abs/1707.01083>`_): interleave the
channels of ``groups`` groups so that the next grouped conv sees every group's output."""

from __future__ import annotations

import torch


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``(N, groups * k, H, W)`` -> the same shape with channel ``g * k + i`` moved to
    ``i * groups + g``."""
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"channel_shuffle: {channels} channels do not split into {groups} groups")
    x = x.view(batch, groups, channels // groups, height, width)
    return x.transpose(1, 2).reshape(batch, channels, height, width)
