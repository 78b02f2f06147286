"""Datasets (registered in ``DATASETS``): the MMEngine-style base class, classification
datasets (CustomDataset, ImageNet, CIFAR10/100, MNIST, VOC multi-label, CUB, ImageNet-21k,
DeepClusterImageNet) and the synthetic shapes datasets.

Every module is imported here so that its ``@DATASETS.register_module()`` runs when the
registry first looks a name up.
"""

from vistra.data.datasets import (
    ade,
    base,
    cifar,
    cityscapes,
    cub,
    custom,
    deepcluster,
    feetarch,
    imagenet,
    inshop,
    mnist,
    seg_base,
    shapes,
    voc,
    voc_cls,
    wrappers,
)
from vistra.data.datasets.base import BaseDataset
from vistra.data.datasets.cifar import CIFAR10, CIFAR100
from vistra.data.datasets.custom import CustomDataset
from vistra.data.datasets.imagenet import ImageNet
from vistra.data.datasets.shapes import ShapesDataset, ShapesSegDataset, write_shapes_dataset
from vistra.data.datasets.shapes_render import render_shape_sample
