"""``vistra infer CONFIG CHECKPOINT INPUT... [--out-dir D] [--show] [--device DEV]
[--batch-size N] [--cfg-options ...]``: predict images, folders of images, or both, with a
trained classifier or segmentor, and print one line per image.

A progress bar runs on a terminal (nothing otherwise); then a table: the predicted class
and score (classification), or the classes present with their share of the pixels
(segmentation). ``--out-dir`` gets ``vis/<image>.png`` (the prediction drawn),
``pred/<image>.png`` (label indices, segmentation) and ``predictions.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vistra.cli.common import add_cfg_options
from vistra.cli.errors import ArgumentParser, run_reporting_errors

PROG = "vistra infer"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Predict images with a trained model.")
    p.add_argument("config", help="config file (.py/.json/.yaml)")
    p.add_argument("checkpoint", help="checkpoint file or http(s) URL")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    p.add_argument("--out-dir", help="write drawn predictions and predictions.json here")
    p.add_argument("--show", action="store_true", help="show each prediction in a window")
    p.add_argument("--wait-time", type=float, default=0.0, help="seconds each shown image stays")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass")
    p.add_argument("--opacity", type=float, default=0.8, help="segmentation overlay opacity")
    add_cfg_options(p)
    return p


def output_names(items: list[Any]) -> list[str]:
    """A file name stem per input, unique (``a``, ``a_1``, ...; ``array_0`` for arrays)."""
    seen: set[str] = set()
    names = []
    for index, item in enumerate(items):
        stem = Path(item.source).stem if item.is_file else f"array_{index}"
        name, n = stem, 1
        while name in seen:
            name, n = f"{stem}_{n}", n + 1
        seen.add(name)
        names.append(name)
    return names


def record(task: str, item: Any, sample: Any, meta: dict, name: str, out_dir: Any) -> dict:
    """The predictions.json entry of one image."""
    from vistra.apis.inference import classification_result, pixel_shares

    if task == "classification":
        result = classification_result(sample, meta.get("classes"))
        result["pred_scores"] = [float(v) for v in result["pred_scores"]]
        return {"image": item.name, **result}
    label_map = sample.pred_sem_seg.numpy()[0]
    entry: dict[str, Any] = {
        "image": item.name,
        "classes": pixel_shares(label_map, meta.get("classes")),
    }
    if out_dir is not None:
        entry["pred_file"] = f"pred/{name}.png"
    return entry


def draw(task: str, item: Any, sample: Any, meta: dict, opacity: float) -> Any:
    from vistra.apis.inputs import read_rgb

    image = read_rgb(item)
    if task == "classification":
        from vistra.visualization.visualizer import draw_classification

        return draw_classification(image, sample, meta.get("classes"), draw_gt=False)
    from vistra.apis.segmentation import draw_segmentation

    return draw_segmentation(image, sample, meta, opacity)


def write_outputs(task: str, sample: Any, drawn: Any, name: str, out_dir: Path) -> None:
    from vistra.apis.outputs import save_image

    if drawn is not None:
        save_image(drawn, out_dir / "vis" / f"{name}.png")
    if task == "segmentation":
        save_image(sample.pred_sem_seg.numpy()[0].astype("uint8"), out_dir / "pred" / f"{name}.png")


def summary_table(task: str, records: list[dict]) -> Any:
    from rich.table import Table

    table = Table(title=f"{len(records)} image(s)")
    table.add_column("image", overflow="fold")
    if task == "classification":
        table.add_column("class")
        table.add_column("score", justify="right")
        for r in records:
            table.add_row(
                r["image"], str(r.get("pred_class", r["pred_label"])), f"{r['pred_score']:.4f}"
            )
    else:
        table.add_column("classes (pixel share)", overflow="fold")
        for r in records:
            shares = ", ".join(f"{k} {v:.1%}" for k, v in r["classes"].items())
            table.add_row(r["image"], shares)
    return table


class _Progress:
    """A rich progress bar on a terminal; nothing when the output is a file or a pipe."""

    def __init__(self, total: int) -> None:
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("infer", total=total)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def run(args: argparse.Namespace) -> None:
    from vistra.apis.inference import predict_batches
    from vistra.apis.inputs import collect_inputs
    from vistra.apis.model import init_model, task_of
    from vistra.apis.outputs import save_json
    from vistra.cli.common import UsageError
    from vistra.engine.allocator import tune_cpu_allocator

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    items, _ = collect_inputs(list(args.inputs))
    tune_cpu_allocator()  # as train/test do: freed memory kept for the next batch
    model = init_model(args.config, args.checkpoint, args.device, args.cfg_options)
    task = task_of(model)
    if task == "features":
        raise UsageError(
            f"{args.config}: {type(model).__name__} predicts no labels; extract its features "
            "with vistra.apis.FeatureExtractor"
        )
    meta = dict(model.dataset_meta or {})
    out_dir = Path(args.out_dir) if args.out_dir else None
    names = output_names(items)
    visualizer = None
    records: list[dict] = []
    with _Progress(len(items)) as progress:
        for chunk, samples in predict_batches(model, items, args.batch_size):
            for item, sample in zip(chunk, samples):
                name = names[len(records)]
                drawn = None
                if out_dir is not None or args.show:
                    drawn = draw(task, item, sample, meta, args.opacity)
                if args.show:
                    if visualizer is None:
                        from vistra.visualization import Visualizer

                        visualizer = Visualizer()
                    visualizer.show(drawn, win_name=item.name, wait_time=args.wait_time)
                if out_dir is not None:
                    write_outputs(task, sample, drawn, name, out_dir)
                records.append(record(task, item, sample, meta, name, out_dir))
            progress.advance(len(chunk))
    if out_dir is not None:
        save_json({"task": task, "predictions": records}, out_dir / "predictions.json")
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(summary_table(task, records))
    if out_dir is not None:
        console.print(f"drawn predictions and predictions.json written to {out_dir}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
