"""LeNet-5 backbone (`Gradient-Based Learning Applied to Document Recognition
<http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf>`_), with MMPretrain's arguments and
keys: the network for 32x32 single-channel images (MNIST resized), tanh activations and
average pooling.

Keys: ``features.{0,3,6}`` (5x5 convs to 6, 16 and 120 channels) and, with
``num_classes > 0``, ``classifier.{0,2}`` (linear layers 120 -> 84 -> ``num_classes``).
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.registry import MODELS


@MODELS.register_module()
class LeNet5(BaseModule):
    """LeNet-5. Returns a one-tensor tuple: the ``(N, 120, 1, 1)`` features of a 32x32
    input, or the ``(N, num_classes)`` scores when ``num_classes > 0``. No ``init_cfg``, as
    upstream: PyTorch's default initialisation."""

    def __init__(self, num_classes: int = -1) -> None:
        super().__init__()
        if not isinstance(num_classes, int):
            raise TypeError(f"LeNet5 num_classes must be an int, got {num_classes!r}")
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2),
            nn.Conv2d(16, 120, kernel_size=5),
            nn.Tanh(),
        )
        if num_classes > 0:
            self.classifier = nn.Sequential(
                nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes)
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.features(x)
        if self.num_classes > 0:
            # the 120 maps are 1x1 on a 32x32 input; flatten keeps a batch of one a batch
            x = self.classifier(x.flatten(1))
        return (x,)
