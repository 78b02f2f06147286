"""Cityscapes (19 training classes), as MMSegmentation's ``CityscapesDataset``.

Layout (``data_root``)::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

The ``*_gtFine_labelTrainIds.png`` masks do not ship with Cityscapes: write them from the
``*_gtFine_labelIds.png`` files with ``python tools/dataset_converters/cityscapes.py
data/cityscapes`` (255 marks the ids not used for training).
"""

from __future__ import annotations

from typing import ClassVar

from vistra.data.datasets.seg_base import BaseSegDataset, check_seg_kwargs
from vistra.registry import DATASETS

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
    'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
    'bus', 'train', 'motorcycle', 'bicycle',
)  # fmt: skip

CITYSCAPES_PALETTE = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153],
    [153, 153, 153], [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152],
    [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100],
    [0, 80, 100], [0, 0, 230], [119, 11, 32],
]  # fmt: skip


@DATASETS.register_module()
class CityscapesDataset(BaseSegDataset):
    """Cityscapes: ``*_leftImg8bit.png`` images with ``*_gtFine_labelTrainIds.png`` masks."""

    METAINFO: ClassVar[dict] = dict(classes=CITYSCAPES_CLASSES, palette=CITYSCAPES_PALETTE)
    LAYOUT: ClassVar[str] = (
        "data_root/leftImg8bit/{{train,val}}/<city>/*{img_suffix} with masks in "
        "data_root/gtFine/{{train,val}}/<city>/*{seg_map_suffix} (write them with "
        "tools/dataset_converters/cityscapes.py)"
    )

    def __init__(
        self,
        img_suffix: str = "_leftImg8bit.png",
        seg_map_suffix: str = "_gtFine_labelTrainIds.png",
        **kwargs,
    ) -> None:
        check_seg_kwargs(type(self), kwargs)
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)


__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "CityscapesDataset"]
