"""Backbones: ResNet family (MMPretrain names and keys; MMSegmentation's and MMSelfSup's
variants under their scopes), ViT (MMPretrain's; MMSegmentation's under scope ``mmseg``),
UNet, timm models."""

import importlib
import pkgutil

from vistra.models.backbones.resnet import (
    BasicBlock,
    Bottleneck,
    ResLayer,
    ResNet,
    ResNetV1c,
    ResNetV1d,
)
from vistra.models.backbones.resnet_cifar import ResNet_CIFAR

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResLayer",
    "ResNet",
    "ResNetV1c",
    "ResNetV1d",
    "ResNet_CIFAR",
]

# Every module of this package registers its classes in MODELS when imported: import them
# all, so that a new family file needs no edit here (the zoo grows one file per family).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

# the self-supervised zoo's classification backbones (issue #18)
from vistra.models.backbones import mixmim  # noqa: E402,F401
