"""``CUB``: Caltech-UCSD Birds-200-2011 (200 classes), in its release layout, as MMPretrain::

    CUB_200_2011/
      images/<NNN.Class_name>/*.jpg
      images.txt               '<image id> <path under images/>'
      image_class_labels.txt   '<image id> <class id, 1-based>'
      train_test_split.txt     '<image id> <1 = train, 0 = test>'
      classes.txt              '<class id> <NNN.Class_name>'

Class names come from ``classes.txt`` without the ``NNN.`` prefix (``Black_footed_Albatross``,
as MMPretrain names them), unless ``metainfo=dict(classes=...)`` names them.
"""

from __future__ import annotations

import os

from vistra.data.datasets.base import BaseDataset, list_from_file
from vistra.data.transforms.functional import choose
from vistra.registry import DATASETS

FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt")


def _id_table(path: str) -> dict[str, str]:
    """``{id: rest of the line}`` of one of the release's two-column files."""
    table = {}
    for number, line in enumerate(list_from_file(path, "CUB file"), 1):
        key, _, value = line.strip().partition(" ")
        if not value:
            raise ValueError(f"{path}:{number}: expected '<id> <value>', got {line!r}")
        table[key] = value.strip()
    return table


@DATASETS.register_module()
class CUB(BaseDataset):
    """CUB-200-2011; ``split`` is ``'train'`` or ``'test'`` (from train_test_split.txt)."""

    def __init__(
        self, data_root: str, split: str = "train", test_mode: bool = False, **kwargs
    ) -> None:
        self.split = choose(split, ("train", "test"), "CUB split")
        kwargs.setdefault("data_prefix", "images")
        super().__init__(ann_file="", data_root=data_root, test_mode=test_mode, **kwargs)

    def _file(self, name: str) -> str:
        path = os.path.join(self.data_root, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"CUB: {path!r} not found; data_root must be the CUB_200_2011 folder holding "
                f"{', '.join(FILES)} and images/"
            )
        return path

    def load_data_list(self) -> list[dict]:
        paths = _id_table(self._file("images.txt"))
        labels = _id_table(self._file("image_class_labels.txt"))
        is_train = _id_table(self._file("train_test_split.txt"))
        if "classes" not in self._metainfo:
            names = _id_table(self._file("classes.txt"))
            self._metainfo["classes"] = tuple(
                v.partition(".")[2] or v
                for _, v in sorted(names.items(), key=lambda kv: int(kv[0]))
            )
        wanted = "1" if self.split == "train" else "0"
        data_list = []
        for image_id, path in paths.items():
            if image_id not in labels or image_id not in is_train:
                raise ValueError(
                    f"CUB: image id {image_id} of images.txt has no label or split entry"
                )
            if is_train[image_id] == wanted:
                data_list.append(
                    dict(
                        img_path=os.path.join(self.img_prefix, path),
                        gt_label=int(labels[image_id]) - 1,
                    )
                )
        return data_list
