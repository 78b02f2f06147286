"""``vistra browse-dataset CONFIG``: draw what the data pipeline gives the model, to PNGs.

MMPretrain's flags (``-o/--output-dir``, ``-p/--phase``, ``-n/--show-number``,
``-i/--show-interval``, ``-m/--mode original|transformed|concat|pipeline``,
``-r/--rescale-factor``, ``-c/--channel-order``) and MMSegmentation's (``--output-dir``,
``--not-show``, ``--show-interval``). Classification samples get their label written
under the image, segmentation samples their ground truth overlaid, self-supervised
samples one tile per view. A window opens only where a display exists, and only with
``--show`` or when no ``--output-dir`` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vistra.cli.common import UsageError, add_cfg_options, load_config, run_reporting_errors
from vistra.cli.errors import ArgumentParser

MODES = ("original", "transformed", "concat", "pipeline")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="vistra browse-dataset",
        description="Draw the samples a data pipeline makes, to PNGs (or a window).",
    )
    p.add_argument("config", help="the config whose dataset to browse")
    p.add_argument("--output-dir", "-o", help="write one PNG per sample here")
    p.add_argument("--phase", "-p", choices=("train", "val", "test"), default="train")
    p.add_argument(
        "--show-number", "-n", type=int, default=sys.maxsize, help="samples to draw (default all)"
    )
    p.add_argument(
        "--show-interval", "-i", type=float, default=2.0, help="seconds each shown image stays"
    )
    p.add_argument(
        "--mode",
        "-m",
        choices=MODES,
        default="transformed",
        help="original: as loaded; transformed: as the model gets it; concat: both; "
        "pipeline: after every transform",
    )
    p.add_argument("--rescale-factor", "-r", type=float, help="scale every image by this factor")
    p.add_argument(
        "--channel-order",
        "-c",
        choices=("BGR", "RGB"),
        default=None,
        help="channel order of the pipeline's images (default: BGR when the data "
        "preprocessor converts to RGB, as it does for images loaded as BGR)",
    )
    p.add_argument("--show", action="store_true", help="show each image in a window")
    p.add_argument("--not-show", action="store_true", help="never open a window")
    add_cfg_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args))


def wants_window(args: argparse.Namespace) -> bool:
    """MMPretrain shows unless --not-show; here a window needs a display, and without one
    a run that writes nothing is an error rather than a silent no-op."""
    from vistra.analysis.output import display_problem

    if args.not_show or not (args.show or args.output_dir is None):
        return False
    problem = display_problem()
    if problem is not None and args.output_dir is None:
        raise UsageError(
            f"nothing to do: no window can open here ({problem}); give --output-dir DIR "
            "to write the images"
        )
    return problem is None or args.show


def run(args: argparse.Namespace) -> None:
    import random

    import numpy as np
    import torch

    from vistra.analysis import browse, output
    from vistra.analysis.config_data import build_dataset, images_are_bgr

    if args.show_number <= 0:
        raise UsageError(f"--show-number must be > 0, got {args.show_number}")
    if args.rescale_factor is not None and args.rescale_factor <= 0:
        raise UsageError(f"--rescale-factor must be > 0, got {args.rescale_factor}")
    show = wants_window(args)
    cfg, remaining = load_config(args.config, None, "none", 0, args.cfg_options)
    if remaining:
        cfg.merge_from_dict(remaining)
    bgr = images_are_bgr(cfg) if args.channel_order is None else args.channel_order == "BGR"
    dataset = build_dataset(cfg, args.phase)
    recorders = browse.record_pipelines(dataset, bgr)
    seed = int((cfg.get("randomness") or {}).get("seed") or 0)
    random.seed(seed)  # the same augmentations on every run
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    count = min(args.show_number, len(dataset))
    taken: set[str] = set()
    for i in range(count):
        image, record = _draw(dataset, recorders, i, args)
        name = output.unique_name(_stem(record, i), taken)
        if args.output_dir is not None:
            output.save_png(Path(args.output_dir) / name, image)
        if show:
            output.show(image, name, args.show_interval)
    where = f" to {args.output_dir}" if args.output_dir else ""
    print(f"{count} samples of {args.phase}_dataloader.dataset drawn ({args.mode}){where}")


def _draw(dataset: Any, recorders: list, index: int, args: argparse.Namespace) -> tuple[Any, Any]:
    """Sample ``index`` through the recording pipeline(s), drawn as ``args.mode`` asks."""
    from vistra.analysis import browse
    from vistra.analysis.config_data import dataset_classes

    for recorder in recorders:  # a wrapper's sample goes through one of them
        recorder.last = browse.Recorded()
    item = dataset[index]
    record = next((r.last for r in recorders if r.last.steps), browse.Recorded())
    if not record.steps:
        raise UsageError(
            f"{args.phase}_dataloader.dataset sample {index}: the pipeline gives no image "
            "('img' or 'inputs') to draw"
        )
    palette, names = _seg_colours(dataset)
    image = browse.draw_sample(
        browse.steps_for_mode(record.steps, args.mode),
        _label_lines(item, dataset_classes(dataset)),
        palette,
        names,
        args.rescale_factor,
    )
    return image, record


def _seg_colours(dataset: Any) -> tuple[Any, list[str] | None]:
    from vistra.visualization.drawing import resolve_palette

    meta = getattr(dataset, "metainfo", None) or {}
    classes = meta.get("classes")
    palette = resolve_palette(meta.get("palette"), classes)
    return palette, list(classes) if classes else None


def _label_lines(item: Any, classes: Any) -> list[str]:
    """``GT: <class>`` for a classification sample, nothing for others."""
    from vistra.visualization.visualizer import classification_lines

    sample = item.get("data_samples") if isinstance(item, dict) else None
    if sample is None or "gt_label" not in sample:
        return []
    return classification_lines(sample, classes, draw_gt=True, draw_pred=False)


def _stem(record: Any, position: int) -> str:
    if record.img_path:
        return Path(record.img_path).stem
    return str(record.sample_idx if record.sample_idx is not None else position)


if __name__ == "__main__":
    raise SystemExit(main())
