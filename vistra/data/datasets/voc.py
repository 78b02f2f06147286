"""PASCAL VOC 2012 segmentation (21 classes), as MMSegmentation's ``PascalVOCDataset``.

Layout (``data_root`` = ``VOCdevkit/VOC2012``)::

    JPEGImages/*.jpg
    SegmentationClass/*.png            masks, 255 on object borders
    SegmentationClassAug/*.png         SBD masks (tools/dataset_converters/voc_aug.py)
    ImageSets/Segmentation/{train,val,trainval,aug,trainaug}.txt

``ann_file`` is required: the split list, one image name per line. The "aug" training
set of MMSeg's ``pascal_voc12_aug.py`` is ``dict(type='ConcatDataset', datasets=[train,
aug])``, ``train`` reading ``train.txt`` with ``SegmentationClass`` masks and ``aug``
reading ``aug.txt`` with ``SegmentationClassAug`` masks.
"""

from __future__ import annotations

import os
from typing import ClassVar

from vistra.data.datasets.seg_base import BaseSegDataset, check_seg_kwargs
from vistra.registry import DATASETS

VOC_CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
    'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
    'sheep', 'sofa', 'train', 'tvmonitor',
)  # fmt: skip

VOC_PALETTE = [
    [0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128],
    [0, 128, 128], [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0],
    [64, 0, 128], [192, 0, 128], [64, 128, 128], [192, 128, 128], [0, 64, 0], [128, 64, 0],
    [0, 192, 0], [128, 192, 0], [0, 64, 128],
]  # fmt: skip


@DATASETS.register_module()
class PascalVOCDataset(BaseSegDataset):
    """PASCAL VOC 2012: the images named in ``ann_file``, ``.jpg`` images, ``.png`` masks."""

    METAINFO: ClassVar[dict] = dict(classes=VOC_CLASSES, palette=VOC_PALETTE)
    LAYOUT: ClassVar[str] = (
        "data_root/JPEGImages/*{img_suffix}, masks in data_root/SegmentationClass/"
        "*{seg_map_suffix} and split lists in data_root/ImageSets/Segmentation/*.txt"
    )

    def __init__(
        self,
        ann_file: str,
        img_suffix: str = ".jpg",
        seg_map_suffix: str = ".png",
        **kwargs,
    ) -> None:
        check_seg_kwargs(type(self), kwargs)
        if not ann_file:
            raise ValueError(
                "PascalVOCDataset needs ann_file=, a split list such as "
                "'ImageSets/Segmentation/train.txt'"
            )
        super().__init__(
            ann_file=ann_file, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs
        )
        # MMSeg checks both at construction, even with lazy_init.
        img_dir = self.data_prefix.get("img_path") or ""
        if not os.path.isdir(img_dir) or not os.path.isfile(self.ann_file):
            missing = img_dir if not os.path.isdir(img_dir) else self.ann_file
            raise FileNotFoundError(
                f"PascalVOCDataset: {missing!r} not found; expected layout: "
                f"{self.LAYOUT.format(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix)}"
            )


__all__ = ["PascalVOCDataset", "VOC_CLASSES", "VOC_PALETTE"]
