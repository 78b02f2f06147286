"""Backbones: ResNet family (MMPretrain names and keys), ViT, timm models."""

from vistra.models.backbones import resnet, resnet_cifar, timm_backbone, unet, vision_transformer
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
