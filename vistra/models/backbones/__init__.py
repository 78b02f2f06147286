"""Backbones: ResNet family (MMPretrain names and keys; MMSegmentation's and MMSelfSup's
variants under their scopes), ViT (MMPretrain's; MMSegmentation's under scope ``mmseg``),
UNet, timm models."""

from vistra.models.backbones import (
    resnet,
    resnet_cifar,
    resnet_mmseg,
    resnet_selfsup,
    timm_backbone,
    unet,
    vision_transformer,
    vit_mmseg,
)
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
