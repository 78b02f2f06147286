"""Write Cityscapes ``*_gtFine_labelTrainIds.png`` masks and the split lists.

    python tools/dataset_converters/cityscapes.py data/cityscapes [--gt-dir gtFine] \
        [-o OUT_DIR] [--nproc 8]

Every ``CITYSCAPES_PATH/<gt-dir>/**/*_gtFine_labelIds.png`` gets a
``*_gtFine_labelTrainIds.png`` beside it, its 34 label ids mapped to the 19 training ids
of the official ``cityscapesscripts`` table (ids not used for training, and any value
outside the table, become 255 = ignored). ``OUT_DIR`` (default: ``CITYSCAPES_PATH``)
receives ``train.txt``, ``val.txt`` and ``test.txt`` listing each split's samples as
``<city>/<city>_<seq>_<frame>``, as MMSegmentation's converter writes them. Unlike
MMSegmentation's, this one reads the ``labelIds`` PNGs instead of the polygon JSON files,
so ``cityscapesscripts`` is not needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from vistra.data.datasets.seg_base import scan_files  # noqa: E402
from vistra.data.errors import DataError  # noqa: E402

LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
SPLITS = ("train", "val", "test")
IGNORE = 255

# cityscapesscripts/helpers/labels.py: label id -> train id, for the 19 training classes.
# Every other id (0-6 void, 9 parking, 10 rail track, 14 guard rail, 15 bridge, 16 tunnel,
# 18 polegroup, 29 caravan, 30 trailer, -1 license plate) is ignored.
ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def train_id_lut() -> np.ndarray:
    """A 256-entry uint8 table: ``lut[label_id]`` is the train id (255 if unused)."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, train_id in ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map an ``(H, W)`` array of Cityscapes label ids to train ids (uint8)."""
    ids = np.asarray(label_ids).astype(np.int64)
    out = np.full(ids.shape, IGNORE, dtype=np.uint8)
    in_table = (ids >= 0) & (ids < 256)
    out[in_table] = train_id_lut()[ids[in_table]]
    return out


def convert_label_file(path: str) -> str:
    """Write the ``labelTrainIds`` PNG next to one ``labelIds`` PNG; returns its path."""
    if not path.endswith(LABEL_IDS_SUFFIX):
        raise ValueError(f"{path!r} does not end with {LABEL_IDS_SUFFIX!r}")
    try:
        with Image.open(path) as img:
            label_ids = np.asarray(img)
    except OSError as exc:
        raise DataError(f"cannot read Cityscapes label file {path!r}: {exc}") from exc
    if label_ids.ndim != 2:
        raise DataError(
            f"{path!r} has shape {label_ids.shape}; a *{LABEL_IDS_SUFFIX} file is a "
            "single-channel image of label ids (is it the *_gtFine_color.png file?)"
        )
    out = path[: -len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX
    Image.fromarray(label_ids_to_train_ids(label_ids)).save(out, format="PNG")
    return out


def find_label_files(gt_dir: str) -> list[str]:
    """Every ``*_gtFine_labelIds.png`` under ``gt_dir``, sorted."""
    return [os.path.join(gt_dir, rel) for rel in sorted(scan_files(gt_dir, LABEL_IDS_SUFFIX))]


def write_split_lists(gt_dir: str, out_dir: str) -> dict[str, int]:
    """Write ``<split>.txt`` for each split folder of ``gt_dir`` that exists; returns the
    number of samples per written split."""
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for split in SPLITS:
        split_dir = os.path.join(gt_dir, split)
        if not os.path.isdir(split_dir):
            continue
        names = sorted(
            rel[: -len(LABEL_IDS_SUFFIX)] for rel in scan_files(split_dir, LABEL_IDS_SUFFIX)
        )
        with open(os.path.join(out_dir, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{name}\n" for name in names)
        counts[split] = len(names)
    return counts


def convert_cityscapes(
    cityscapes_path: str, gt_dir: str = "gtFine", out_dir: str | None = None, nproc: int = 1
) -> dict[str, int]:
    """Convert every label file and write the split lists; returns ``{split: count}``."""
    gt_root = os.path.join(cityscapes_path, gt_dir)
    if not os.path.isdir(gt_root):
        raise FileNotFoundError(
            f"Cityscapes annotation folder {gt_root!r} not found; expected "
            f"{cityscapes_path}/{gt_dir}/{{train,val,test}}/<city>/*{LABEL_IDS_SUFFIX} "
            "(unzip gtFine_trainvaltest.zip there, or pass --gt-dir)"
        )
    files = find_label_files(gt_root)
    if not files:
        raise FileNotFoundError(f"no *{LABEL_IDS_SUFFIX} file under {gt_root!r}")
    if nproc > 1:
        with Pool(nproc) as pool:
            for _ in pool.imap_unordered(convert_label_file, files, chunksize=16):
                pass
    else:
        for path in files:
            convert_label_file(path)
    return write_split_lists(gt_root, out_dir or cityscapes_path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Convert Cityscapes annotations to TrainIds")
    parser.add_argument("cityscapes_path", help="cityscapes data path")
    parser.add_argument("--gt-dir", default="gtFine", type=str)
    parser.add_argument("-o", "--out-dir", help="where the split lists go (default: input)")
    parser.add_argument("--nproc", default=1, type=int, help="number of processes")
    args = parser.parse_args(argv)
    if args.nproc < 1:
        parser.error("--nproc must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        counts = convert_cityscapes(args.cityscapes_path, args.gt_dir, args.out_dir, args.nproc)
    except (FileNotFoundError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    took = time.perf_counter() - start
    lists = ", ".join(f"{split}.txt: {n}" for split, n in counts.items())
    print(f"wrote *{TRAIN_IDS_SUFFIX} masks and split lists ({lists}) in {took:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
