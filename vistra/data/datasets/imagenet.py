"""``ImageNet``: ILSVRC-2012 in MMPretrain 1.x's layouts.

::

    data_root/
      train/<wnid>/*.JPEG      class folders (labels from sorted folder names)
      val/*.JPEG               flat, labelled by meta/val.txt
      meta/train.txt, meta/val.txt   optional '<relative path> <label>' lists

``split='train'|'val'|'test'`` sets ``data_prefix`` to that folder and uses
``meta/<split>.txt`` when it exists (else scans class folders); ``'test'`` has no labels.
Class names default to the 1000 ImageNet lemmas in label order. ``ImageNet21k`` reads the
same layouts without a default class list.
"""

from __future__ import annotations

import os

from vistra.data.datasets.categories import IMAGENET_CATEGORIES
from vistra.data.datasets.custom import IMG_EXTENSIONS, CustomDataset
from vistra.data.transforms.functional import choose
from vistra.registry import DATASETS


@DATASETS.register_module()
class ImageNet(CustomDataset):
    """ImageNet-1k classification; see the module docstring for layouts and splits."""

    IMG_EXTENSIONS = IMG_EXTENSIONS
    METAINFO = {"classes": IMAGENET_CATEGORIES}

    def __init__(
        self,
        data_root: str = "",
        split: str = "",
        data_prefix: str | dict = "",
        ann_file: str = "",
        metainfo: dict | None = None,
        **kwargs,
    ) -> None:
        kwargs = {"extensions": self.IMG_EXTENSIONS, **kwargs}
        if split:
            choose(split, ("train", "val", "test"), f"{type(self).__name__} split")
            if split == "test":
                kwargs["with_label"] = False  # the ImageNet test set has no public labels
            data_prefix = data_prefix or split
            if not ann_file and os.path.isfile(
                os.path.join(data_root or "", "meta", f"{split}.txt")
            ):
                ann_file = os.path.join("meta", f"{split}.txt")
        self.split = split
        super().__init__(
            data_root=data_root,
            data_prefix=data_prefix,
            ann_file=ann_file,
            metainfo=metainfo,
            **kwargs,
        )


@DATASETS.register_module()
class ImageNet21k(ImageNet):
    """ImageNet-21k in the same layouts (``train/<class>/*``, ``meta/train.txt``), with no
    built-in class list (21k+ names: give ``metainfo=dict(classes=...)`` or let the class
    folders name them). ``multi_label=True`` is not implemented upstream either: an error."""

    METAINFO: dict = {}

    def __init__(
        self,
        data_root: str = "",
        split: str = "",
        data_prefix: str | dict = "",
        ann_file: str = "",
        metainfo: dict | None = None,
        multi_label: bool = False,
        **kwargs,
    ) -> None:
        if multi_label:
            raise NotImplementedError(
                "ImageNet21k(multi_label=True) is not implemented (nor in MMPretrain)"
            )
        self.multi_label = multi_label
        super().__init__(data_root, split, data_prefix, ann_file, metainfo, **kwargs)
