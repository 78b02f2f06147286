"""``FootArchDataset``: a custom two-class dataset, and how to add your own.

This module is the worked example for adding a dataset. The data are photographs of
feet with the foot arch painted in a label mask.

1. **Lay the files out** in MMSegmentation's usual way: one folder of images and one of
   masks per split, an image and its mask sharing a name::

       data/feet/                      <- data_root
         images/train/0001.png         annotations/train/0001.png
         images/train/0002.png         annotations/train/0002.png
         images/val/0101.png           annotations/val/0101.png

   A mask is a single-channel 8-bit PNG whose pixel values are class ids: 0 =
   background, 1 = foot arch, 255 = "do not care" (ignored by the loss and the
   metrics). Colour masks must be converted to ids first.

2. **Write the class**: subclass :class:`BaseSegDataset`, give ``METAINFO`` the class
   names (their order defines the ids) and one RGB colour per class for drawing, set
   the file suffixes, and register it so configs can name it::

       from vistra.data.datasets.seg_base import BaseSegDataset
       from vistra.registry import DATASETS

       @DATASETS.register_module()
       class FootArchDataset(BaseSegDataset):
           METAINFO = dict(classes=('background', 'foot arch'),
                           palette=[[0, 0, 0], [255, 0, 0]])

           def __init__(self, img_suffix='.png', seg_map_suffix='.png',
                        reduce_zero_label=False, **kwargs):
               super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                                reduce_zero_label=reduce_zero_label, **kwargs)

   ``reduce_zero_label=False`` because 0 is a real class here (ADE20K sets it True, its
   0 meaning "unlabelled"). Everything else (scanning folders, pairing images with
   masks, ``ann_file`` split lists, class subsets) comes from ``BaseSegDataset``.
   Outside vistra, load the module with ``custom_imports = dict(imports=['my_module'])``
   in the config.

3. **Use it in a config**::

       dataset_type = 'FootArchDataset'
       data_root = 'data/feet'
       train_dataloader = dict(
           batch_size=4, num_workers=2,
           sampler=dict(type='InfiniteSampler', shuffle=True),
           dataset=dict(type=dataset_type, data_root=data_root,
                        data_prefix=dict(img_path='images/train',
                                         seg_map_path='annotations/train'),
                        pipeline=train_pipeline))

   and give the decode head ``num_classes=2``.

The class is registered both as ``FootArchDataset`` and as ``FeetArchDataset``.
"""

from __future__ import annotations

from typing import ClassVar

from vistra.data.datasets.seg_base import BaseSegDataset, check_seg_kwargs
from vistra.registry import DATASETS


@DATASETS.register_module(name=["FootArchDataset", "FeetArchDataset"])
class FootArchDataset(BaseSegDataset):
    """Foot-arch segmentation: ``.png`` images and ``.png`` masks (0 background, 1 arch)."""

    METAINFO: ClassVar[dict] = dict(
        classes=("background", "foot arch"), palette=[[0, 0, 0], [255, 0, 0]]
    )
    LAYOUT: ClassVar[str] = (
        "data_root/images/{{train,val}}/*{img_suffix} with masks in "
        "data_root/annotations/{{train,val}}/*{seg_map_suffix}"
    )

    def __init__(
        self,
        img_suffix: str = ".png",
        seg_map_suffix: str = ".png",
        reduce_zero_label: bool = False,
        **kwargs,
    ) -> None:
        check_seg_kwargs(type(self), kwargs)
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs,
        )


__all__ = ["FootArchDataset"]
