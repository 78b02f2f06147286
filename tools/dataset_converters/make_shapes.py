"""Write the synthetic shapes dataset to disk.

    python tools/dataset_converters/make_shapes.py --out data/shapes --task cls \
        --num-train 10000 --num-val 1000 --img-size 64 --seed 0

``--task cls`` writes the CustomDataset/ImageNet layout (``train/<class>/*.png``,
``val/<class>/*.png``, ``meta/train.txt``, ``meta/val.txt``, ``meta/classes.txt``);
``--task seg`` the MMSegmentation layout (``img_dir/{train,val}/*.png`` and label PNGs
in ``ann_dir/{train,val}/*.png``, 0 = background). The images are byte-identical to the
ones ``ShapesDataset``/``ShapesSegDataset`` render in memory with the same seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from vistra.data.datasets.shapes import SHAPE_NAMES, write_shapes_dataset  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--task", choices=("cls", "seg"), default="cls")
    parser.add_argument("--num-train", type=int, default=10000)
    parser.add_argument("--num-val", type=int, default=1000)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--num-classes", type=int, default=6, help=f"shape kinds, 1..{len(SHAPE_NAMES)}"
    )
    args = parser.parse_args(argv)
    for name in ("num_train", "num_val"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.img_size < 8:
        parser.error("--img-size must be at least 8")
    if not 1 <= args.num_classes <= len(SHAPE_NAMES):
        parser.error(f"--num-classes must be in [1, {len(SHAPE_NAMES)}]")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    counts = write_shapes_dataset(
        args.out,
        task=args.task,
        num_train=args.num_train,
        num_val=args.num_val,
        img_size=args.img_size,
        seed=args.seed,
        num_classes=args.num_classes,
    )
    took = time.perf_counter() - start
    print(f"wrote {counts} ({args.task}, {args.img_size}px) to {args.out} in {took:.1f}s")


if __name__ == "__main__":
    main()
