"""Show how a pre-trained MAE fills in an image: original | masked | reconstruction |
reconstruction with the visible patches pasted back, as one PNG.

    python tools/analysis_tools/visualize_reconstruction.py CONFIG CHECKPOINT IMG_PATH \\
        --out-file recon.png [--use-vis-pipeline] [--norm-pix] [--seed 0] [--device cpu]

MMSelfSup's spelling ``--checkpoint CKPT --img-path IMG`` works too. The image is resized
to the backbone's ``img_size`` (or goes through the config's ``vis_pipeline`` with
``--use-vis-pipeline``). ``--norm-pix`` maps predictions of a model trained with
``norm_pix=True`` back with each patch's own mean and std; without the flag the head's
``norm_pix`` setting decides. The random mask is drawn from ``--seed``.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from vistra.checkpoint import extract_state_dict, load_checkpoint_file, load_state_dict
from vistra.cli.common import add_cfg_options
from vistra.config import Config
from vistra.data.collate import pseudo_collate
from vistra.data.transforms.base import Compose
from vistra.registry import MODELS
from vistra.visualization.mae_reconstruction import save_reconstruction


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the MAE config file")
    parser.add_argument("checkpoint", nargs="?", help="the pre-trained checkpoint")
    parser.add_argument("img_path", nargs="?", help="the image to reconstruct")
    parser.add_argument("--checkpoint", dest="checkpoint_opt", help="same as CHECKPOINT")
    parser.add_argument("--img-path", dest="img_path_opt", help="same as IMG_PATH")
    parser.add_argument("--out-file", required=True, help="the PNG to write")
    parser.add_argument(
        "--use-vis-pipeline",
        action="store_true",
        help="read the image with the config's vis_pipeline instead of load + resize",
    )
    parser.add_argument(
        "--norm-pix",
        action="store_true",
        help="undo per-patch normalisation of the prediction (models trained with norm_pix)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random mask")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device"
    )
    add_cfg_options(parser)
    args = parser.parse_args(argv)
    args.checkpoint = args.checkpoint or args.checkpoint_opt
    args.img_path = args.img_path or args.img_path_opt
    for name in ("checkpoint", "img_path"):
        if not getattr(args, name):
            parser.error(f"{name.upper()} is required (positional or --{name.replace('_', '-')})")
    return args


def build_model(cfg: Config, checkpoint: str, device: str) -> torch.nn.Module:
    """The config's model with the checkpoint's weights; refuses one that leaves any unset."""
    model_cfg = copy.deepcopy(cfg["model"])
    if cfg.get("data_preprocessor") is not None:
        model_cfg.setdefault("data_preprocessor", cfg.data_preprocessor)
    model = MODELS.build(model_cfg, key_path="model")
    if not hasattr(model, "reconstruct"):
        raise SystemExit(f"{type(model).__name__} has no reconstruct(); this tool needs an MAE")
    state = extract_state_dict(load_checkpoint_file(checkpoint))
    report = load_state_dict(model, state, source=checkpoint)
    if report.unset:
        raise SystemExit(f"the checkpoint leaves model weights unset:\n{report.table()}")
    return model.to(device).eval()


def vis_pipeline(cfg: Config, model: torch.nn.Module, use_vis_pipeline: bool) -> Compose:
    if use_vis_pipeline:
        if cfg.get("vis_pipeline") is None:
            raise SystemExit("--use-vis-pipeline: the config has no vis_pipeline")
        return Compose(cfg.vis_pipeline)
    size = tuple(getattr(model.backbone, "img_size", (224, 224)))
    return Compose(
        [
            dict(type="LoadImageFromFile"),
            dict(type="Resize", scale=(size[1], size[0]), backend="pillow"),
            dict(type="PackInputs"),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model = build_model(cfg, args.checkpoint, args.device)
    sample = vis_pipeline(cfg, model, args.use_vis_pipeline)({"img_path": args.img_path})
    if sample is None:
        raise SystemExit(f"the pipeline dropped {args.img_path}")
    preprocessor = model.data_preprocessor
    inputs = preprocessor(pseudo_collate([sample]), training=False)["inputs"]
    torch.manual_seed(args.seed)
    pred, mask = model.reconstruct(inputs, norm_pix=True if args.norm_pix else None)
    inputs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
    out = save_reconstruction(
        args.out_file,
        inputs,
        pred,
        mask,
        mean=getattr(preprocessor, "mean", None),
        std=getattr(preprocessor, "std", None),
        # images load as BGR; a preprocessor without channel conversion keeps them so
        bgr=not getattr(preprocessor, "_channel_conversion", False),
    )
    print(f"reconstruction saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
