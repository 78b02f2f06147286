"""``vistra analyze-results CONFIG RESULT --out-dir D``: the most confident right and wrong
predictions of a classifier, drawn (MMPretrain's ``tools/analysis_tools/analyze_results.py``).

``RESULT`` is what ``vistra test CONFIG CHECKPOINT --out preds.pkl|json`` wrote. ``D/success``
and ``D/fail`` get the ``--topk`` most confident correct and wrong predictions, each a PNG
with the ground truth, the prediction and its score, plus ``success.json`` / ``fail.json``.
"""

from __future__ import annotations

import argparse
from typing import Any

from vistra.cli.common import UsageError, add_cfg_options, load_config, run_reporting_errors
from vistra.cli.errors import ArgumentParser


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="vistra analyze-results",
        description="Draw the most confident correct and wrong predictions of a classifier.",
    )
    p.add_argument("config", help="the test config the predictions were made with")
    p.add_argument("result", help="the `vistra test --out` .pkl/.json/.yaml file")
    p.add_argument("--out-dir", required=True, help="success/ and fail/ go here")
    p.add_argument("--topk", type=int, default=20, help="images per folder (default 20)")
    p.add_argument("--rescale-factor", "-r", type=float, help="scale the images by this factor")
    add_cfg_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args))


def run(args: argparse.Namespace) -> None:
    from vistra.analysis.config_data import build_dataset, dataset_classes, images_are_bgr
    from vistra.analysis.predictions import load_predictions
    from vistra.analysis.results import load_images, save_group, split_success_fail

    if args.topk <= 0:
        raise UsageError(f"--topk must be > 0, got {args.topk}")
    if args.rescale_factor is not None and args.rescale_factor <= 0:
        raise UsageError(f"--rescale-factor must be > 0, got {args.rescale_factor}")
    predictions = load_predictions(args.result)
    cfg = _config(args)
    dataset = build_dataset(cfg, "test", pipeline=[])
    classes = dataset_classes(dataset)
    bgr = images_are_bgr(cfg)
    success, fail = split_success_fail(predictions, args.topk)
    right = sum(p.correct for p in predictions)
    print(f"{len(predictions)} predictions: {right} correct, {len(predictions) - right} wrong")
    # every image is read (and checked against the data) before anything is written
    groups = {
        "success": load_images(success, dataset, bgr),
        "fail": load_images(fail, dataset, bgr),
    }
    for folder, items in groups.items():
        target = save_group(args.out_dir, folder, items, classes, args.rescale_factor)
        print(f"{len(items)} {folder} images saved to {target}")


def _config(args: argparse.Namespace) -> Any:
    cfg, remaining = load_config(args.config, None, "none", 0, args.cfg_options)
    if remaining:
        cfg.merge_from_dict(remaining)
    return cfg


if __name__ == "__main__":
    raise SystemExit(main())
