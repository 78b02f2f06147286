"""Tiny datasets in the real on-disk formats, for the config-tree and end-to-end tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from vistra.data.datasets.shapes import render_split, write_shapes_dataset
from vistra.data.image_io import imwrite


def write_cifar10(root: Path, n: int = 4, num_classes: int = 10) -> Path:
    """The official python-pickle layout: cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def batch(count: int) -> dict:
        return {
            b"batch_label": b"fake",
            b"labels": [int(x) for x in rng.integers(0, num_classes, count)],
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        }

    for k in range(1, 6):
        (folder / f"data_batch_{k}").write_bytes(pickle.dumps(batch(n), protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n), protocol=2))
    names = [f"class{i}".encode() for i in range(num_classes)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return Path(root)


def write_imagenet_like(root: Path, n_train: int = 4, n_val: int = 2, img_size: int = 64) -> Path:
    """ImageNet/CustomDataset layout (train/<class>/*.png, val/<class>/*.png, meta/*.txt)."""
    write_shapes_dataset(
        root, "cls", num_train=n_train, num_val=n_val, img_size=img_size, num_classes=2
    )
    return Path(root)


# ------------------------------------------------------------------ segmentation
# Tiny MMSegmentation datasets: shapes-rendered images with their label maps remapped
# to each dataset's label convention, a few pixels of the ignore value included.

SEG_SPLITS = ("train", "val")


def _seg_samples(split: str, n: int, img_size: int, wide: bool = False):
    """``n`` (bgr image, shape mask) pairs; ``wide`` glues two renders side by side
    (Cityscapes' 2:1 aspect). Mask values are 0 (background) and 1..6 (shape kinds)."""
    for i in range(n):
        img, _, mask = render_split(split, i, seed=0, img_size=img_size, num_classes=6)
        if wide:
            img2, _, mask2 = render_split(split, i + n, seed=0, img_size=img_size, num_classes=6)
            img, mask = np.hstack([img, img2]), np.hstack([mask, mask2])
        yield i, img, mask


def _with_border(label: np.ndarray, value: int) -> np.ndarray:
    """A one-pixel frame of ``value`` (the dataset's ignore or "other" label)."""
    out = label.copy()
    out[0, :] = out[-1, :] = value
    out[:, 0] = out[:, -1] = value
    return out


def write_cityscapes(root: Path, n: int = 2, img_size: int = 64) -> Path:
    """leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png and
    gtFine/<split>/<city>/..._gtFine_labelTrainIds.png (train ids 0..18, 255 ignored)."""
    root = Path(root)
    for split, city in zip(SEG_SPLITS, ("aachen", "frankfurt")):
        for i, img, mask in _seg_samples(split, n, img_size, wide=True):
            stem = f"{city}_{i:06d}_000019"
            imwrite(img, root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            label = _with_border(mask * 3, 255)  # train ids 0, 3, ..., 18
            imwrite(label, root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png")
    return root


def write_ade20k(root: Path, n: int = 2, img_size: int = 64) -> Path:
    """images/{training,validation}/ADE_*_%08d.jpg and annotations/.../*.png, where 0 is
    "other" (ignored through reduce_zero_label) and 1..150 are the classes."""
    root = Path(root)
    for split, folder in zip(SEG_SPLITS, ("training", "validation")):
        for i, img, mask in _seg_samples(split, n, img_size):
            stem = f"ADE_{split}_{i + 1:08d}"
            imwrite(img, root / "images" / folder / f"{stem}.jpg")
            label = _with_border(mask * 20 + 1, 0)  # classes 1, 21, ..., 121
            imwrite(label, root / "annotations" / folder / f"{stem}.png")
    return root


# PASCAL VOC's colour map: bit j of the id's bits (3k + channel) lands on bit 7 - k.
VOC_PALETTE = [
    c
    for i in range(256)
    for c in (sum(((i >> (3 * k + ch)) & 1) << (7 - k) for k in range(8)) for ch in (0, 1, 2))
]

VOC_LABEL_DIRS = ("SegmentationClass", "SegmentationClassAug")


def write_pascal_voc(root: Path, n: int = 2, img_size: int = 64) -> Path:
    """VOC2012 layout: JPEGImages/*.jpg, SegmentationClass/*.png and SegmentationClassAug/
    *.png (palette PNGs holding class ids 0..20, 255 on object borders), and
    ImageSets/Segmentation/{train,val,aug}.txt listing file stems."""
    root = Path(root)
    lists: dict[str, list[str]] = {}
    # aug.txt lists the SBD extras: images outside train and val (rendered as "test")
    for split, render in (("train", "train"), ("val", "val"), ("aug", "test")):
        lists[split] = []
        for i, img, mask in _seg_samples(render, n, img_size):
            stem = f"2007_{split}{i:04d}"
            lists[split].append(stem)
            imwrite(img, root / "JPEGImages" / f"{stem}.jpg")
            label = Image.fromarray(_with_border(mask * 3, 255))
            label.putpalette(VOC_PALETTE)  # an "L" image becomes "P", ids kept
            # SegmentationClassAug holds every image; SegmentationClass only train and val
            folders = ("SegmentationClassAug",) if split == "aug" else VOC_LABEL_DIRS
            for folder in folders:
                (root / folder).mkdir(parents=True, exist_ok=True)
                label.save(root / folder / f"{stem}.png")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    for split, stems in lists.items():
        (sets / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return root


def write_mnist(root: Path, n: int = 4) -> Path:
    """The four MNIST IDX files (the image files gzipped, as distributed; the label files
    unpacked): 28x28 renders of the shapes data, labels 0..9."""
    import gzip
    import struct

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, split in (("train", "train"), ("t10k", "val")):
        images = np.stack([
            np.asarray(Image.fromarray(render_split(split, i, seed=0, img_size=28, num_classes=6)[0]).convert("L"))
            for i in range(n)
        ])  # fmt: skip
        labels = np.arange(n, dtype=np.uint8) % 10
        with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">BBBBiii", 0, 0, 8, 3, n, 28, 28) + images.tobytes())
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">BBBBi", 0, 0, 8, 1, n) + labels.tobytes()
        )
    return root


def write_voc_cls(root: Path, n: int = 4, img_size: int = 64) -> Path:
    """VOC2007 layout for multi-label classification: JPEGImages/*.jpg, Annotations/*.xml
    (two objects each, one of them difficult in every other image) and
    ImageSets/Main/{train,val,trainval,test}.txt."""
    from vistra.data.datasets.voc_cls import VOC_CLASSES

    root = Path(root)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    stems = {}
    for split, render in (("trainval", "train"), ("test", "val")):
        stems[split] = []
        for i in range(n):
            stem = f"{split}{i:04d}"
            stems[split].append(stem)
            imwrite(
                render_split(render, i, seed=0, img_size=img_size, num_classes=6)[0],
                root / "JPEGImages" / f"{stem}.jpg",
            )
            objects = "".join(
                f"<object><name>{VOC_CLASSES[(i + k * 7) % 20]}</name>"
                f"<difficult>{int(k == 1 and i % 2 == 0)}</difficult></object>"
                for k in range(2)
            )
            (root / "Annotations" / f"{stem}.xml").write_text(
                f"<annotation><filename>{stem}.jpg</filename>{objects}</annotation>"
            )
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True, exist_ok=True)
    for split, names in (("train", stems["trainval"]), ("val", stems["trainval"]),
                         ("trainval", stems["trainval"]), ("test", stems["test"])):  # fmt: skip
        (sets / f"{split}.txt").write_text("".join(f"{s}\n" for s in names))
    return root


def write_cub(root: Path, n: int = 8, img_size: int = 64) -> Path:
    """CUB_200_2011 release layout: images/<NNN.Name>/*.jpg and the id tables (three of
    every four images train, the fourth test; two classes)."""
    root = Path(root)
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    rows: dict[str, list[str]] = {"images": [], "labels": [], "split": []}
    for i in range(n):
        folder = classes[i % 2]
        path = f"{folder}/bird_{i:04d}.jpg"
        img = render_split("train", i, seed=0, img_size=img_size, num_classes=6)[0]
        imwrite(img, root / "images" / path)
        rows["images"].append(f"{i + 1} {path}")
        rows["labels"].append(f"{i + 1} {i % 2 + 1}")
        rows["split"].append(f"{i + 1} {int(i % 4 != 3)}")
    (root / "images.txt").write_text("\n".join(rows["images"]) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(rows["labels"]) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(rows["split"]) + "\n")
    (root / "classes.txt").write_text("".join(f"{k + 1} {c}\n" for k, c in enumerate(classes)))
    return root


def write_foot_arch(root: Path, n: int = 2, img_size: int = 64) -> Path:
    """images/{train,val}/*.png and annotations/{train,val}/*.png with 0 (background)
    and 1 (foot arch)."""
    root = Path(root)
    for split in SEG_SPLITS:
        for i, img, mask in _seg_samples(split, n, img_size):
            imwrite(img, root / "images" / split / f"{i:05d}.png")
            imwrite((mask > 0).astype(np.uint8), root / "annotations" / split / f"{i:05d}.png")
    return root


def write_inshop(root: Path, n_items: int = 2, img_size: int = 64) -> Path:
    """In-shop Clothes Retrieval layout: Eval/list_eval_partition.txt (a count line, a
    header, then '<image name> <item id> <status>') and Img/img/<GENDER>/<category>/<item>/
    *.jpg. ``n_items`` training items of two images each; as many other items, each with
    two gallery images and one query image (so every query has two matches)."""
    root = Path(root)
    rows = []
    for i in range(2 * n_items):
        item = f"id_{i:08d}"
        statuses = ["train", "train"] if i < n_items else ["gallery", "query", "gallery"]
        for j, status in enumerate(statuses):
            name = f"img/WOMEN/Dresses/{item}/{j + 1:02d}_{j + 1}_front.jpg"
            img = render_split("train", 3 * i + j, seed=0, img_size=img_size, num_classes=6)[0]
            imwrite(img, root / "Img" / name)
            rows.append(f"{name} {item} {status}")
    text = f"{len(rows)}\nimage_name item_id evaluation_status\n" + "\n".join(rows) + "\n"
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    (root / "Eval" / "list_eval_partition.txt").write_text(text)
    return root


# dataset type -> writer of tiny data in its on-disk format (None: rendered in memory)
WRITERS = {
    "ImageNet": write_imagenet_like,
    "CustomDataset": write_imagenet_like,
    "CIFAR10": write_cifar10,
    "ShapesDataset": None,
    "ShapesSegDataset": None,
    "CityscapesDataset": write_cityscapes,
    "ADE20KDataset": write_ade20k,
    "PascalVOCDataset": write_pascal_voc,
    "FootArchDataset": write_foot_arch,
    "MNIST": write_mnist,
    "VOC": write_voc_cls,
    "CUB": write_cub,
    "ImageNet21k": write_imagenet_like,
    "DeepClusterImageNet": write_imagenet_like,
    "InShop": write_inshop,
}
