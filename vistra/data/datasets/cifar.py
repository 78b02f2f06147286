"""``CIFAR10`` / ``CIFAR100`` from the official "python version" pickle batches.

Nothing is downloaded: the batches must already be on disk, e.g.::

    data/cifar10/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    data/cifar100/cifar-100-python/{train, test, meta}

``data_root`` may point at the parent folder or at the batches folder itself.

Images are held in memory as ``(32, 32, 3)`` uint8 arrays in **RGB** order, exactly as
MMPretrain stores them: its CIFAR configs normalise with RGB means and ``to_rgb=False``
("loaded images are already RGB format"), so configs and checkpoints carry over only if
the channel order is the same. Pipelines start without ``LoadImageFromFile``.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np

from vistra.data.datasets.base import BaseDataset
from vistra.data.datasets.categories import CIFAR10_CATEGORIES, CIFAR100_CATEGORIES
from vistra.data.transforms.functional import choose
from vistra.registry import DATASETS


class _RestrictedUnpickler(pickle.Unpickler):
    """The CIFAR batches hold only dicts, lists, strings, bytes and numpy arrays; refuse
    anything else so a tampered file cannot run code."""

    _ALLOWED: ClassVar[dict[str, set[str]]] = {
        "numpy": {"ndarray", "dtype"},
        "numpy.core.multiarray": {"_reconstruct", "scalar"},
        "numpy._core.multiarray": {"_reconstruct", "scalar"},
        "numpy.core.numeric": {"_frombuffer"},
        "numpy._core.numeric": {"_frombuffer"},
        "_codecs": {"encode"},
    }

    def find_class(self, module: str, name: str) -> type:
        if name in self._ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def load_batch(path: Path) -> dict:
    """Unpickle one official batch file (keys decoded from bytes to str)."""
    with open(path, "rb") as f:
        try:
            entry = _RestrictedUnpickler(f, encoding="latin1").load()
        except Exception as exc:
            raise ValueError(f"cannot read CIFAR batch file {str(path)!r}: {exc}") from None
    if not isinstance(entry, dict):
        raise ValueError(f"CIFAR batch file {str(path)!r} does not hold a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


@DATASETS.register_module()
class CIFAR10(BaseDataset):
    """CIFAR-10: 50k train / 10k test 32x32 images in 10 classes."""

    base_folder = "cifar-10-batches-py"
    train_list = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
    test_list = ("test_batch",)
    meta_file, meta_key, label_key = "batches.meta", "label_names", "labels"
    METAINFO = {"classes": CIFAR10_CATEGORIES}

    def __init__(
        self,
        data_root: str = "",
        split: str = "train",
        metainfo: dict | None = None,
        download: bool = False,
        data_prefix: str = "",
        test_mode: bool = False,
        **kwargs,
    ) -> None:
        self.split = choose(split, ("train", "test"), f"{type(self).__name__} split")
        if split == "train" and test_mode:
            warnings.warn(
                f"{type(self).__name__}: split='train' with test_mode=True uses the training set",
                stacklevel=2,
            )
        if not data_root and not data_prefix:
            raise ValueError(
                f"{type(self).__name__} needs data_root= (the folder holding {self.base_folder}/)"
            )
        self.download = download
        # Class names come from the batches' meta file unless the caller names them.
        self._classes_given = bool(metainfo) and "classes" in metainfo
        super().__init__(
            ann_file="",
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(root=data_prefix),
            test_mode=test_mode,
            **kwargs,
        )

    def _batch_folder(self) -> Path:
        root = Path(self.data_prefix["root"])
        needed = (*self.train_list, *self.test_list, self.meta_file)
        for folder in (root / self.base_folder, root):
            if all((folder / name).is_file() for name in needed):
                return folder
        missing = [n for n in needed if not (root / self.base_folder / n).is_file()]
        why = "download=True is not supported (vistra never downloads); " if self.download else ""
        raise FileNotFoundError(
            f"{type(self).__name__}: {why}missing {', '.join(missing)} in "
            f"{str(root / self.base_folder)!r}. Put the official python-version batches "
            f"({', '.join(needed)}) in {str(root / self.base_folder)!r}, or point data_root "
            "at the folder that holds them."
        )

    def load_data_list(self) -> list[dict]:
        folder = self._batch_folder()
        names = self.train_list if self.split == "train" else self.test_list
        images, labels = [], []
        for name in names:
            entry = load_batch(folder / name)
            if "data" not in entry or self.label_key not in entry:
                raise ValueError(
                    f"CIFAR batch {str(folder / name)!r} lacks 'data' or {self.label_key!r}"
                )
            images.append(np.asarray(entry["data"], dtype=np.uint8))
            labels.extend(int(x) for x in entry[self.label_key])
        # rows are R plane, G plane, B plane of 32x32 -> (N, 32, 32, 3) RGB
        imgs = np.vstack(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        if not self._classes_given:
            meta = load_batch(folder / self.meta_file)
            if self.meta_key not in meta:
                raise ValueError(
                    f"CIFAR meta file {str(folder / self.meta_file)!r} lacks {self.meta_key!r}"
                )
            names = meta[self.meta_key]
            self._metainfo["classes"] = tuple(
                n.decode() if isinstance(n, bytes) else n for n in names
            )
        return [
            {
                "img": np.ascontiguousarray(img),
                "gt_label": label,
                "img_shape": (32, 32),
                "ori_shape": (32, 32),
            }
            for img, label in zip(imgs, labels)
        ]

    def __repr__(self) -> str:
        return super().__repr__() + f"\n    Prefix of data: {self.data_prefix['root']}"


@DATASETS.register_module()
class CIFAR100(CIFAR10):
    """CIFAR-100: 50k train / 10k test 32x32 images in 100 (fine) classes."""

    base_folder = "cifar-100-python"
    train_list = ("train",)
    test_list = ("test",)
    meta_file, meta_key, label_key = "meta", "fine_label_names", "fine_labels"
    METAINFO = {"classes": CIFAR100_CATEGORIES}
