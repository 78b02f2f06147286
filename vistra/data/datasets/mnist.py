"""``MNIST`` / ``FashionMNIST`` from the official IDX files (MMPretrain's names and arguments).

Nothing is downloaded: the four files must already be in the folder (``data_prefix``, or
``data_root`` joined with it), gzipped as distributed or unpacked::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]

Images are held in memory as ``(28, 28)`` uint8 arrays (one channel), as MMPretrain holds
them; pipelines start without ``LoadImageFromFile`` (the LeNet-5 config resizes to 32).
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np

from vistra.data.datasets.base import BaseDataset
from vistra.data.transforms.functional import choose
from vistra.registry import DATASETS

IDX_DTYPES = {0x08: np.uint8}  # the only element type the MNIST files use


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX file (magic ``0 0 type ndim``, big-endian int32 sizes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int(v) for v in np.frombuffer(data, ">i4", count=ndim, offset=4))
    count = int(np.prod(shape))
    body = 4 + 4 * ndim
    if len(data) - body != count:
        raise ValueError(f"{str(path)!r}: header says {shape}, file holds {len(data) - body} bytes")
    return np.frombuffer(data, np.uint8, count=count, offset=body).reshape(shape)


@DATASETS.register_module()
class MNIST(BaseDataset):
    """MNIST: 60k train / 10k test 28x28 grey digits."""

    files = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    METAINFO = {
        "classes": ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
                    "6 - six", "7 - seven", "8 - eight", "9 - nine")
    }  # fmt: skip

    def __init__(
        self,
        data_root: str = "",
        split: str = "train",
        metainfo: dict | None = None,
        download: bool = True,
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
                f"{type(self).__name__} needs data_root= or data_prefix= (the folder of the IDX files)"
            )
        self.download = download
        super().__init__(
            ann_file="",
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(root=data_prefix),
            test_mode=test_mode,
            **kwargs,
        )

    def _file(self, name: str) -> Path:
        root = Path(self.data_prefix["root"])
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"{type(self).__name__}: no {name} (or {name}.gz) in {str(root)!r}; vistra never "
            f"downloads: put the official IDX files ({', '.join(sum(self.files.values(), ()))}) "
            "there, or point data_root/data_prefix at their folder"
        )

    def load_data_list(self) -> list[dict]:
        image_file, label_file = self.files[self.split]
        images, labels = read_idx(self._file(image_file)), read_idx(self._file(label_file))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{type(self).__name__}: {image_file} holds {images.shape}, {label_file} holds "
                f"{labels.shape}; expected (N, H, W) images and N labels"
            )
        shape = tuple(images.shape[1:])
        return [
            {"img": np.array(img), "gt_label": int(label), "img_shape": shape, "ori_shape": shape}
            for img, label in zip(images, labels)
        ]


@DATASETS.register_module()
class FashionMNIST(MNIST):
    """Fashion-MNIST: the MNIST layout with 10 kinds of clothing."""

    METAINFO = {
        "classes": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot")
    }  # fmt: skip
