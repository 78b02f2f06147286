"""Pascal VOC multi-label classification, as MMPretrain's ``VOC`` (20 classes).

Layout (``data_root`` = ``VOC2007``)::

    JPEGImages/<id>.jpg  Annotations/<id>.xml  ImageSets/Main/{train,val,trainval,test}.txt

Each sample's classes come from the ``<object>`` entries of its annotation: the classes of
objects not marked ``<difficult>1</difficult>`` are ``gt_label`` (sorted, each once), the
other ones ``gt_label_difficult``, which the VOC metrics read (the test pipeline packs it
as metainfo). Objects of a class the dataset does not list are skipped, as upstream.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from vistra.data.datasets.base import BaseDataset, join_root, list_from_file
from vistra.data.transforms.functional import choose
from vistra.registry import DATASETS

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")  # fmt: skip
SPLITS = ("train", "val", "trainval", "test")


def labels_from_xml(path: str, class_to_idx: dict[str, int]) -> tuple[list[int], list[int]]:
    """``(gt_label, gt_label_difficult)`` of one VOC annotation file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ValueError(f"cannot read VOC annotation {path!r}: {exc}") from None
    labels, difficult = set(), set()
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_to_idx:
            continue
        flag = (obj.findtext("difficult") or "0").strip()
        (difficult if flag == "1" else labels).add(class_to_idx[name])
    return sorted(labels), sorted(difficult)


@DATASETS.register_module()
class VOC(BaseDataset):
    """VOC multi-label classification; ``split`` picks ``ImageSets/Main/<split>.txt``
    unless ``image_set_path`` (relative to ``data_root``) names the list."""

    METAINFO = {"classes": VOC_CLASSES}

    def __init__(
        self,
        data_root: str,
        split: str = "trainval",
        image_set_path: str = "",
        data_prefix: str | dict = dict(img_path="JPEGImages", ann_path="Annotations"),  # noqa: B006
        test_mode: bool = False,
        metainfo: dict | None = None,
        **kwargs,
    ) -> None:
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        data_prefix = dict(data_prefix)
        data_prefix.setdefault("ann_path", "Annotations")
        if not image_set_path:
            choose(split, SPLITS, "VOC split")
            image_set_path = os.path.join("ImageSets", "Main", f"{split}.txt")
        self.split = split
        self.image_set_path = join_root(os.path.expanduser(data_root or ""), image_set_path)
        super().__init__(
            ann_file="",
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=data_prefix,
            test_mode=test_mode,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        if not os.path.isfile(self.image_set_path):
            raise FileNotFoundError(
                f"VOC image set {self.image_set_path!r} not found: expected "
                f"<data_root>/ImageSets/Main/<split>.txt (splits {', '.join(SPLITS)}) or "
                "image_set_path= relative to data_root"
            )
        class_to_idx = {name: i for i, name in enumerate(self.metainfo["classes"])}
        data_list = []
        for img_id in list_from_file(self.image_set_path, "VOC image set"):
            img_id = img_id.strip()
            if not img_id:
                continue
            ann = os.path.join(self.data_prefix["ann_path"], f"{img_id}.xml")
            labels, difficult = labels_from_xml(ann, class_to_idx)
            data_list.append(
                dict(
                    img_path=os.path.join(self.img_prefix, f"{img_id}.jpg"),
                    gt_label=labels,
                    gt_label_difficult=difficult,
                )
            )
        return data_list
