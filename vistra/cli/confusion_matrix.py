"""``vistra confusion-matrix``: the confusion matrix of a classifier or a segmenter.

Classification (MMPretrain's ``tools/analysis_tools/confusion_matrix.py``)::

    vistra confusion-matrix CONFIG CHECKPOINT_OR_RESULT [SAVE_DIR] [--show] [--show-path F.png]
        [--include-values] [--cmap viridis] [--out F.pkl|json] [--out-csv F.csv]

The second argument is a checkpoint (the test set is run through it first, as ``vistra
test`` would) or the file ``vistra test --out preds.pkl|json`` wrote. Segmentation
(MMSegmentation's)::

    vistra confusion-matrix CONFIG PREDICTION_DIR SAVE_DIR [--show] [--color-theme winter]
        [--title T]

over the PNGs ``vistra test CONFIG CKPT --out PREDICTION_DIR`` wrote. ``SAVE_DIR`` gets
``confusion_matrix.png`` and ``confusion_matrix.csv`` in both cases.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

from vistra.cli.common import UsageError, add_cfg_options, load_config, run_reporting_errors
from vistra.cli.errors import ArgumentParser

CLS_CMAP, SEG_CMAP = "viridis", "winter"
SEG_TITLE = "Normalized Confusion Matrix"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="vistra confusion-matrix",
        description="Confusion matrix (PNG, CSV) of a classifier or a segmenter.",
    )
    p.add_argument("config", help="the test config")
    p.add_argument(
        "ckpt_or_result",
        metavar="CHECKPOINT_OR_RESULT",
        help="a checkpoint, a `vistra test --out` .pkl/.json/.yaml file, or (segmentation) "
        "the folder of prediction PNGs `vistra test --out DIR` wrote",
    )
    p.add_argument(
        "save_dir",
        nargs="?",
        metavar="SAVE_DIR",
        help="write confusion_matrix.png and confusion_matrix.csv here (needed for segmentation)",
    )
    p.add_argument("--out", help="save the matrix of counts as .pkl/.json/.yaml (a list of rows)")
    p.add_argument("--out-csv", help="save the matrix as CSV, class names as header")
    p.add_argument("--show", action="store_true", help="show the matrix in a window")
    p.add_argument("--show-path", help="save the drawn matrix to this PNG")
    p.add_argument("--include-values", action="store_true", help="write the counts in the cells")
    p.add_argument(
        "--cmap",
        "--color-theme",
        dest="cmap",
        default=None,
        help=f"matplotlib colour map (default {CLS_CMAP}; {SEG_CMAP} for segmentation)",
    )
    p.add_argument("--title", default=None, help=f"title (segmentation: {SEG_TITLE!r})")
    p.add_argument(
        "--work-dir",
        help="with a checkpoint: keep the test run's log here (default: a temporary folder)",
    )
    add_cfg_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args))


def run(args: argparse.Namespace) -> None:
    from vistra.analysis.predictions import is_result_file

    if args.out is not None and Path(args.out).suffix.lower() not in (".pkl", ".json", ".yaml"):
        raise UsageError(f"--out {args.out}: use a .pkl, .json or .yaml file")
    if Path(args.ckpt_or_result).is_dir():
        if args.save_dir is None:
            raise UsageError(
                f"{args.ckpt_or_result} is a folder of segmentation predictions: give SAVE_DIR "
                "too (vistra confusion-matrix CONFIG PREDICTION_DIR SAVE_DIR)"
            )
        segmentation(args)
    elif is_result_file(args.ckpt_or_result):
        classification(args, checkpoint=None)
    else:
        classification(args, checkpoint=args.ckpt_or_result)


# ----------------------------------------------------------------------------- classification
def classification(args: argparse.Namespace, checkpoint: str | None) -> None:
    from vistra.analysis.confusion import classification_confusion
    from vistra.analysis.predictions import class_names

    cfg = _config(args)
    if checkpoint is None:
        from vistra.analysis.predictions import load_predictions

        predictions = load_predictions(args.ckpt_or_result)
    else:
        predictions = _predict(cfg, checkpoint, args.work_dir)
    classes = _classes_or_none(cfg)
    matrix = classification_confusion(predictions, len(classes) if classes else None)
    names = class_names(classes, len(matrix))
    print(f"confusion matrix of {len(predictions)} predictions (rows: true, columns: predicted)")
    _print_table(matrix, names)
    _write_outputs(args, matrix, names, cmap=args.cmap or CLS_CMAP, title=args.title)


def _config(args: argparse.Namespace) -> Any:
    cfg, remaining = load_config(args.config, None, "none", 0, args.cfg_options)
    if remaining:
        cfg.merge_from_dict(remaining)
    return cfg


def _predict(cfg: Any, checkpoint: str, work_dir: str | None) -> list:
    """Run the test loop on ``checkpoint`` (as ``vistra test``) and read its predictions."""
    from vistra.analysis.predictions import load_predictions
    from vistra.engine.runner import Runner

    with tempfile.TemporaryDirectory(prefix="vistra-confusion-") as tmp:
        out = os.path.join(tmp, "predictions.pkl")
        cfg.work_dir = work_dir or tmp
        cfg.load_from = checkpoint
        cfg.test_evaluator = dict(type="DumpResults", out_file_path=out)
        Runner.from_config(cfg, None, purpose="test").test()
        return load_predictions(out)


def _classes_or_none(cfg: Any) -> tuple[str, ...] | None:
    """The test set's class names; indices stand in when the data cannot be built here
    (results analysed away from the data), as in MMPretrain."""
    from vistra.analysis.config_data import build_dataset, dataset_classes

    try:
        return dataset_classes(build_dataset(cfg, "test", pipeline=[]))
    except Exception as exc:
        print(f"notice: class names unknown ({exc}); labelling by index", file=sys.stderr)
        return None


def _print_table(matrix: Any, names: list[str]) -> None:
    if len(names) > 40:
        print(f"({len(names)} classes: see the CSV)")
        return
    width = max(6, *(len(n) for n in names), *(len(str(v)) for v in matrix.ravel()))
    print(" " * width + " " + " ".join(n[:width].rjust(width) for n in names))
    for name, row in zip(names, matrix):
        print(name[:width].rjust(width) + " " + " ".join(f"{v:>{width}}" for v in row))


def _write_outputs(
    args: argparse.Namespace,
    matrix: Any,
    names: list[str],
    cmap: str,
    title: str | None,
    percent: bool = False,
) -> None:
    from vistra.analysis import output
    from vistra.analysis.confusion import matrix_csv, plot_confusion, row_percentages

    pngs = [p for p in (args.show_path,) if p]
    csvs = [p for p in (args.out_csv,) if p]
    if args.save_dir:
        pngs.append(os.path.join(args.save_dir, "confusion_matrix.png"))
        csvs.append(os.path.join(args.save_dir, "confusion_matrix.csv"))
    for path in csvs:
        print(
            f"confusion matrix (CSV) saved to {output.write_text(path, matrix_csv(matrix, names))}"
        )
    if args.out:
        _dump_matrix(matrix, args.out)
        print(f"confusion matrix saved to {args.out}")
    if pngs or args.show:
        drawn = row_percentages(matrix) if percent else matrix
        image = plot_confusion(drawn, names, args.include_values or percent, cmap, title, percent)
        for path in pngs:
            print(f"the confusion matrix is saved at {output.save_png(path, image)}")
        if args.show:
            output.show(image, "confusion matrix")


def _dump_matrix(matrix: Any, path: str) -> None:
    from vistra.analysis import output

    rows = matrix.tolist()
    suffix = Path(path).suffix.lower()
    if suffix == ".pkl":
        output.write_bytes(path, pickle.dumps(rows))
    elif suffix == ".json":
        output.write_text(path, json.dumps(rows) + "\n")
    else:
        import yaml

        output.write_text(path, yaml.safe_dump(rows))


# ----------------------------------------------------------------------------- segmentation
def segmentation(args: argparse.Namespace) -> None:
    from vistra.analysis.config_data import build_dataset, dataset_classes
    from vistra.analysis.seg_confusion import segmentation_confusion

    cfg = _config(args)
    dataset = build_dataset(cfg, "test")
    classes = dataset_classes(dataset)
    if not classes:
        raise UsageError(
            "the test dataset has no 'classes' in its metainfo; cannot size the matrix"
        )
    matrix = segmentation_confusion(
        dataset, args.ckpt_or_result, len(classes), _ignore_index(cfg, dataset)
    )
    print(f"pixel confusion matrix of {len(dataset)} images (rows: true, columns: predicted)")
    _print_table(matrix, list(classes))
    _write_outputs(
        args, matrix, list(classes), args.cmap or SEG_CMAP, args.title or SEG_TITLE, percent=True
    )


def _ignore_index(cfg: Any, dataset: Any) -> int:
    """The test evaluator's IoUMetric ``ignore_index``, else the dataset's, else 255."""
    evaluator = cfg.get("test_evaluator")
    for metric in evaluator if isinstance(evaluator, list) else [evaluator]:
        if isinstance(metric, dict) and "ignore_index" in metric:
            return int(metric["ignore_index"])
    return int(getattr(dataset, "ignore_index", 255))


if __name__ == "__main__":
    raise SystemExit(main())
