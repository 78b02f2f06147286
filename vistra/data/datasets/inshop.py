"""``InShop``: DeepFashion In-shop Clothes Retrieval, in its release layout, as MMPretrain::

    <data_root>/
      Eval/list_eval_partition.txt   (ann_file) a count line, a header line, then
                                     '<image name> <item id> <train|query|gallery>'
      Img/img/...                    (data_prefix 'Img'; image names start with 'img/')

Splits, all three read from the one partition file:

- ``'train'``: ``gt_label`` is the item's class index, items numbered in order of first
  appearance among the training lines (3997 classes in the release).
- ``'gallery'``: no label; ``sample_idx`` is the image's position in the gallery.
- ``'query'``: ``gt_label`` is the list of gallery positions that show the query's item
  (what the retrieval metrics score the ranked gallery against).
"""

from __future__ import annotations

import os

from vistra.data.datasets.base import BaseDataset, list_from_file
from vistra.data.transforms.functional import choose
from vistra.registry import DATASETS

SPLITS = ("train", "query", "gallery")


def read_partition(path: str) -> list[tuple[str, str, str]]:
    """``(image name, item id, status)`` rows of ``list_eval_partition.txt``."""
    rows = []
    lines = list_from_file(path, "InShop partition file")
    for number, line in enumerate(lines[2:], 3):  # a count line and a header come first
        fields = line.split()
        if len(fields) != 3 or fields[2] not in SPLITS:
            raise ValueError(
                f"{path}:{number}: expected '<image name> <item id> <train|query|gallery>', "
                f"got {line!r}"
            )
        rows.append((fields[0], fields[1], fields[2]))
    return rows


@DATASETS.register_module()
class InShop(BaseDataset):
    """In-shop Clothes Retrieval; ``split`` is ``'train'``, ``'query'`` or ``'gallery'``."""

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        data_prefix: str | dict = "Img",
        ann_file: str = "Eval/list_eval_partition.txt",
        **kwargs,
    ) -> None:
        self.split = choose(split, SPLITS, "InShop split")
        super().__init__(data_root=data_root, data_prefix=data_prefix, ann_file=ann_file, **kwargs)

    def load_data_list(self) -> list[dict]:
        rows = read_partition(self.ann_file)
        if self.split == "train":
            classes: dict[str, int] = {}
            return [
                dict(img_path=self._path(name), gt_label=classes.setdefault(item, len(classes)))
                for name, item, status in rows
                if status == "train"
            ]
        gallery = [(name, item) for name, item, status in rows if status == "gallery"]
        if self.split == "gallery":
            return [
                dict(img_path=self._path(name), sample_idx=i) for i, (name, _) in enumerate(gallery)
            ]
        positions: dict[str, list[int]] = {}
        for i, (_, item) in enumerate(gallery):
            positions.setdefault(item, []).append(i)
        data_list = []
        for name, item, status in rows:
            if status != "query":
                continue
            if item not in positions:
                raise ValueError(
                    f"{self.ann_file}: query image {name!r} shows item {item!r}, which no "
                    "gallery image shows; a query needs at least one match to be scored"
                )
            data_list.append(dict(img_path=self._path(name), gt_label=list(positions[item])))
        return data_list

    def _path(self, name: str) -> str:
        return os.path.join(self.img_prefix, name)
