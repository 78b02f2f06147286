"""Predict one image with a trained model, in either upstream package's command form.

MMPretrain's (``MODEL``: a config file or a ``vistra list-models`` name)::

    python demo/image_demo.py IMG MODEL [--checkpoint CKPT | --weights CKPT] \\
        [--show] [--show-dir DIR] [--device DEV]

prints the prediction as JSON (``pred_label``, ``pred_score``, ``pred_class``).

MMSegmentation's::

    python demo/image_demo.py IMG CONFIG CHECKPOINT [--out-file F] [--device DEV] \\
        [--opacity 0.5] [--with-labels] [--title T]

draws the predicted classes over the image into ``--out-file`` (shown in a window
without it). Which model the files describe decides what is predicted, not the form.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from vistra.cli.errors import ArgumentParser, run_reporting_errors  # noqa: E402


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="image_demo.py", description=__doc__.split("\n\n")[0])
    p.add_argument("img", help="image file")
    p.add_argument("model", help="config file, or a model name (MMPretrain form)")
    p.add_argument("checkpoint_file", nargs="?", help="checkpoint (MMSegmentation form)")
    p.add_argument("--checkpoint", "--weights", dest="weights", help="checkpoint file or URL")
    p.add_argument("--show", action="store_true", help="show the prediction in a window")
    p.add_argument("--show-dir", help="write the drawn prediction into this folder")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if any)")
    p.add_argument("--out-file", help="where to write the drawn segmentation")
    p.add_argument("--opacity", type=float, default=0.5, help="segmentation overlay opacity")
    p.add_argument("--with-labels", action="store_true", help="write class names on regions")
    p.add_argument("--title", default="result", help="the window's title")
    return p


def classify(args) -> None:
    import json

    from rich import print_json

    from vistra.apis import ImageClassificationInferencer

    inferencer = ImageClassificationInferencer(
        args.model, pretrained=args.weights or True, device=args.device
    )
    result = inferencer(args.img, show=args.show, show_dir=args.show_dir)[0]
    result.pop("pred_scores")  # as MMPretrain's demo: the full vector is long
    print_json(json.dumps(result))


def segment(args, model) -> None:
    from vistra.apis import inference_model
    from vistra.apis.inference import pixel_shares
    from vistra.apis.inputs import collect_inputs, read_rgb
    from vistra.apis.outputs import save_image
    from vistra.apis.segmentation import draw_segmentation

    sample = inference_model(model, args.img)
    item = collect_inputs(args.img)[0][0]
    drawn = draw_segmentation(
        read_rgb(item), sample, model.dataset_meta, args.opacity, args.with_labels
    )
    if args.out_file:
        save_image(drawn, args.out_file)
        print(f"drawn prediction written to {args.out_file}")
    if args.show or not args.out_file:  # MMSegmentation's demo shows when not writing
        from vistra.visualization import Visualizer

        Visualizer().show(drawn, win_name=args.title)
    shares = pixel_shares(sample.pred_sem_seg.numpy()[0], model.dataset_meta.get("classes"))
    print(", ".join(f"{name} {share:.1%}" for name, share in shares.items()))


def run(args) -> None:
    from vistra.apis.model import as_model, task_of

    weights = args.checkpoint_file or args.weights
    if args.checkpoint_file and args.weights:
        from vistra.cli.common import UsageError

        raise UsageError("give the checkpoint once: as the third argument or as --checkpoint")
    model = as_model(args.model, weights or True, args.device)
    task = task_of(model)
    if task == "classification":
        args.model, args.weights = model, None
        classify(args)
    elif task == "segmentation":
        segment(args, model)
    else:
        raise ValueError(
            f"{type(model).__name__} predicts no labels; use vistra.apis.FeatureExtractor"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
