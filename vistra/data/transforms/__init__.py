"""Data transforms (registered in ``TRANSFORMS``): loading, resizing, crop/flip/pad/rotate,
photometric, RandAugment/AutoAugment, wrappers and packing.

Every module is imported here so that its ``@TRANSFORMS.register_module()`` runs when the
registry first looks a name up.
"""

from vistra.data.transforms import (
    augment_ops,
    auto_augment,
    beit_transforms,
    efficientnet_crops,
    formatting,
    generate_edge,
    geometric,
    loading,
    photometric,
    resize,
    resize_to_multiple,
    selfsup,
    selfsup_formatting,
    selfsup_pretext,
    selfsup_rotation,
    selfsup_solarize,
    simmim_mask,
    torchvision_wrappers,
    wrappers,
)
from vistra.data.transforms.augment_ops import (
    AutoContrast,
    Brightness,
    ColorTransform,
    Contrast,
    Cutout,
    Equalize,
    Invert,
    Posterize,
    Rotate,
    Sharpness,
    Shear,
    Solarize,
    SolarizeAdd,
    Translate,
)
from vistra.data.transforms.auto_augment import AutoAugment, RandAugment
from vistra.data.transforms.base import BaseTransform, Compose
from vistra.data.transforms.formatting import PackInputs, PackSegInputs
from vistra.data.transforms.geometric import CenterCrop, Pad, RandomCrop, RandomFlip, RandomRotate
from vistra.data.transforms.loading import LoadAnnotations, LoadImageFromFile
from vistra.data.transforms.photometric import ColorJitter, PhotoMetricDistortion, RandomErasing
from vistra.data.transforms.resize import RandomResize, RandomResizedCrop, Resize, ResizeEdge
from vistra.data.transforms.resize_to_multiple import ResizeToMultiple
from vistra.data.transforms.selfsup_formatting import PackSelfSupInputs
from vistra.data.transforms.tta import TestTimeAug
from vistra.data.transforms.wrappers import RandomApply, RandomChoice
