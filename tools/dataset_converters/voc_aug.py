"""Convert the SBD ("aug") masks for PASCAL VOC 2012 and write the aug split lists.

    python tools/dataset_converters/voc_aug.py data/VOCdevkit data/VOCdevkit/VOCaug \
        [-o OUT_DIR] [--nproc 8] [--no-len-check]

Inputs, as MMSegmentation's converter expects them::

    DEVKIT_PATH/VOC2012/ImageSets/Segmentation/{train,val}.txt
    AUG_PATH/dataset/cls/*.mat           SBD masks (MATLAB files, GTcls.Segmentation)
    AUG_PATH/dataset/{train,val}.txt     SBD splits

Outputs: one PNG per ``.mat`` file in ``OUT_DIR`` (default
``DEVKIT_PATH/VOC2012/SegmentationClassAug``), and in
``DEVKIT_PATH/VOC2012/ImageSets/Segmentation``:

- ``trainaug.txt``: VOC train plus all of SBD, minus VOC val (10582 names);
- ``aug.txt``: SBD minus VOC train and val (10582 - len(train.txt) names),

sorted by name. The counts are checked against the full datasets unless
``--no-len-check``. Reading ``.mat`` files needs scipy (``pip install scipy``); it is not
a vistra dependency.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from vistra.data.datasets.base import list_from_file  # noqa: E402
from vistra.data.errors import DataError  # noqa: E402

AUG_LEN = 10582  # images in VOC train + SBD train/val, less VOC val
SEG_LISTS = os.path.join("VOC2012", "ImageSets", "Segmentation")


def load_mat_mask(path: str) -> np.ndarray:
    """The class mask (uint8 ``(H, W)``) of one SBD ``cls/*.mat`` file."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(
            "reading SBD .mat files needs scipy, which vistra does not install: "
            "pip install scipy (the split lists need no scipy)"
        ) from None
    try:
        data = loadmat(path)
        return np.asarray(data["GTcls"][0]["Segmentation"][0]).astype(np.uint8)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise DataError(
            f"cannot read the SBD mask in {path!r} ({type(exc).__name__}: {exc}); expected a "
            "MATLAB file holding the struct GTcls with a Segmentation field"
        ) from exc


def convert_mat(mat_name: str, in_dir: str, out_dir: str) -> str:
    """``in_dir/<name>.mat`` -> ``out_dir/<name>.png``; returns the PNG path."""
    out = os.path.join(out_dir, mat_name[: -len(".mat")] + ".png")
    Image.fromarray(load_mat_mask(os.path.join(in_dir, mat_name))).save(out, format="PNG")
    return out


def convert_masks(aug_path: str, out_dir: str, nproc: int = 1) -> int:
    """Convert every ``AUG_PATH/dataset/cls/*.mat``; returns how many."""
    in_dir = os.path.join(aug_path, "dataset", "cls")
    if not os.path.isdir(in_dir):
        raise FileNotFoundError(
            f"SBD mask folder {in_dir!r} not found; expected AUG_PATH/dataset/cls/*.mat "
            "(the benchmark_RELEASE folder of SBD)"
        )
    names = sorted(n for n in os.listdir(in_dir) if n.endswith(".mat"))
    os.makedirs(out_dir, exist_ok=True)
    job = partial(convert_mat, in_dir=in_dir, out_dir=out_dir)
    if nproc > 1:
        with Pool(nproc) as pool:
            for _ in pool.imap_unordered(job, names, chunksize=32):
                pass
    else:
        for name in names:
            job(name)
    return len(names)


def _read_list(path: str, what: str) -> list[str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} not found")
    return [line.strip() for line in list_from_file(path, what)]


def aug_lists(devkit_path: str, aug_path: str) -> tuple[list[str], list[str]]:
    """``(trainaug, aug)`` name lists from the VOC and SBD split files, sorted."""
    sbd = _read_list(os.path.join(aug_path, "dataset", "train.txt"), "SBD split list")
    sbd += _read_list(os.path.join(aug_path, "dataset", "val.txt"), "SBD split list")
    voc_train = _read_list(os.path.join(devkit_path, SEG_LISTS, "train.txt"), "VOC split list")
    voc_val = _read_list(os.path.join(devkit_path, SEG_LISTS, "val.txt"), "VOC split list")
    trainaug = sorted(set(voc_train + sbd) - set(voc_val))
    aug = sorted(set(sbd) - set(voc_train + voc_val))
    return trainaug, aug


def check_lengths(trainaug: list[str], aug: list[str], num_voc_train: int) -> None:
    """Fail unless the lists have the sizes the full VOC 2012 + SBD give."""
    if len(trainaug) != AUG_LEN or len(aug) != AUG_LEN - num_voc_train:
        raise DataError(
            f"trainaug.txt would list {len(trainaug)} images (expected {AUG_LEN}) and aug.txt "
            f"{len(aug)} (expected {AUG_LEN - num_voc_train}); are the VOC and SBD split files "
            "complete? Pass --no-len-check to write the lists of a partial copy anyway"
        )


def write_aug_lists(devkit_path: str, trainaug: list[str], aug: list[str]) -> tuple[str, str]:
    """Write ``trainaug.txt`` and ``aug.txt`` into VOC's ``ImageSets/Segmentation``."""
    folder = os.path.join(devkit_path, SEG_LISTS)
    os.makedirs(folder, exist_ok=True)
    paths = (os.path.join(folder, "trainaug.txt"), os.path.join(folder, "aug.txt"))
    for path, names in zip(paths, (trainaug, aug)):
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{name}\n" for name in names)
    return paths


def convert_voc_aug(
    devkit_path: str,
    aug_path: str,
    out_dir: str | None = None,
    nproc: int = 1,
    check_len: bool = True,
) -> dict[str, int]:
    """Check the lists, convert the masks, then write the lists; returns counts."""
    trainaug, aug = aug_lists(devkit_path, aug_path)
    if check_len:
        num_train = len(_read_list(os.path.join(devkit_path, SEG_LISTS, "train.txt"), "list"))
        check_lengths(trainaug, aug, num_train)
    out_dir = out_dir or os.path.join(devkit_path, "VOC2012", "SegmentationClassAug")
    masks = convert_masks(aug_path, out_dir, nproc)
    write_aug_lists(devkit_path, trainaug, aug)
    return {"masks": masks, "trainaug": len(trainaug), "aug": len(aug)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert PASCAL VOC aug (SBD) annotations to the MMSegmentation format"
    )
    parser.add_argument("devkit_path", help="pascal voc devkit path")
    parser.add_argument("aug_path", help="pascal voc aug (SBD) path")
    parser.add_argument("-o", "--out-dir", "--out_dir", dest="out_dir", help="output path")
    parser.add_argument("--nproc", default=1, type=int, help="number of processes")
    parser.add_argument(
        "--no-len-check", action="store_true", help="skip the check of the full list sizes"
    )
    args = parser.parse_args(argv)
    if args.nproc < 1:
        parser.error("--nproc must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        counts = convert_voc_aug(
            args.devkit_path, args.aug_path, args.out_dir, args.nproc, not args.no_len_check
        )
    except (FileNotFoundError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: {counts} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
