"""Every OpenMMLab name this package promises resolves through the registries."""

import pytest

from vistra.registry import DATASETS, FUNCTIONS, TRANSFORMS, RegistryError

TRANSFORM_NAMES = [
    "LoadImageFromFile",
    "LoadAnnotations",
    "Resize",
    "RandomResize",
    "RandomResizedCrop",
    "ResizeEdge",
    "CenterCrop",
    "RandomCrop",
    "RandomFlip",
    "Pad",
    "RandomRotate",
    "ColorJitter",
    "RandomErasing",
    "PhotoMetricDistortion",
    "RandAugment",
    "AutoAugment",
    "AutoContrast",
    "Brightness",
    "ColorTransform",
    "Contrast",
    "Cutout",
    "Equalize",
    "Invert",
    "Posterize",
    "Rotate",
    "Sharpness",
    "Shear",
    "Solarize",
    "SolarizeAdd",
    "Translate",
    "RandomApply",
    "RandomChoice",
    "PackInputs",
    "PackClsInputs",
    "PackSegInputs",
]
DATASET_NAMES = [
    "BaseDataset",
    "CustomDataset",
    "ImageNet",
    "CIFAR10",
    "CIFAR100",
    "ShapesDataset",
    "ShapesSegDataset",
]


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_transform_names(name):
    assert TRANSFORMS.get(name) is not None
    assert TRANSFORMS.get(f"mmpretrain.{name}") is TRANSFORMS.get(name)


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_dataset_names(name):
    assert DATASETS.get(name) is not None


def test_collate_names():
    assert (
        FUNCTIONS.get("pseudo_collate") is not None and FUNCTIONS.get("default_collate") is not None
    )


def test_unknown_argument_is_named_with_a_suggestion():
    with pytest.raises(
        RegistryError, match="unexpected argument 'crop_szie'.*did you mean 'crop_size'"
    ):
        TRANSFORMS.build(dict(type="CenterCrop", crop_szie=3))


def test_pipeline_config_builds_an_mmseg_train_pipeline():
    from vistra.data.transforms.base import Compose

    pipeline = Compose(
        [
            dict(type="LoadImageFromFile"),
            dict(type="LoadAnnotations", reduce_zero_label=True),
            dict(type="RandomResize", scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
            dict(type="RandomCrop", crop_size=(512, 512), cat_max_ratio=0.75),
            dict(type="RandomFlip", prob=0.5),
            dict(type="PhotoMetricDistortion"),
            dict(type="PackSegInputs"),
        ]
    )
    assert len(pipeline.transforms) == 7
