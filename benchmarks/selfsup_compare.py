"""Pre-training methods side by side: the same tiny ViT, the same data, the same wall clock.

Each method (MAE, SimCLR, MoCo v3, BYOL, SimMIM) pre-trains one tiny ViT (4 layers of
width 96, 64 px images, 8 px patches: the quickstart's) on the built-in shapes images for
``--budget`` seconds of CPU time (a hook stops the run at the first iteration past the
budget), then its backbone is taken out of the checkpoint with
``tools/model_converters/extract_backbone_weights.py`` and linear-probed (frozen backbone,
a BatchNorm neck and a linear head, as MMPretrain's MAE linear probe) for
``--probe-epochs`` epochs; the probe's top-1 on a held-out split is printed beside the same
probe on a randomly initialised backbone, in a table and in
``work_dirs/benchmarks/selfsup_compare/selfsup_compare.png``.

    python benchmarks/selfsup_compare.py [--budget 120] [--probe-epochs 4] [--methods mae,simclr,...]

Every method runs with vistra's Runner and the registered algorithm of the MMPretrain
config type name (``MAE``, ``SimCLR``, ``MoCoV3``, ``BYOL``, ``SimMIM``); the recipes
(augmentations, optimiser, temperature, momentum) follow the ImageNet configs of MMPretrain
scaled down to the tiny backbone, and are in ``METHODS`` below. With the defaults the run
takes about ``(budget + 90 s) x methods`` on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IMG = 64
PATCH = 8
WIDTH = 96
ARCH = dict(embed_dims=WIDTH, num_layers=4, num_heads=3, feedforward_channels=4 * WIDTH)
NUM_CLASSES = 6
MEAN, STD = [127.5] * 3, [64.0] * 3

# --------------------------------------------------------------------------- recipes
VIEW = [  # one augmented view for the contrastive methods (SimCLR/BYOL/MoCo v3's, small)
    dict(type="RandomResizedCrop", scale=IMG, crop_ratio_range=(0.3, 1.0)),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandomApply", transforms=[dict(type="ColorJitter", brightness=0.4,
         contrast=0.4, saturation=0.2, hue=0.1)], prob=0.8),
    dict(type="RandomGrayscale", prob=0.2, keep_channels=True),
]  # fmt: skip
TWO_VIEWS = [dict(type="MultiView", num_views=2, transforms=[VIEW]), dict(type="PackInputs")]
ONE_VIEW = [dict(type="RandomFlip", prob=0.5), dict(type="PackInputs")]
VIT = dict(type="VisionTransformer", arch=ARCH, img_size=IMG, patch_size=PATCH)
ADAMW = dict(type="AdamW", lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.05)


def _projector(out: int = 64, layers: int = 2, width: int = WIDTH) -> dict:
    """An MLP projector (or, with ``width`` = the projector's output, a predictor)."""
    return dict(type="NonLinearNeck", in_channels=width, hid_channels=256, out_channels=out,
                num_layers=layers, with_avg_pool=False, norm_cfg=dict(type="BN1d"))  # fmt: skip


METHODS: dict[str, dict] = {
    "mae": dict(
        model=dict(
            type="MAE",
            backbone=dict(type="MAEViT", arch=ARCH, img_size=IMG, patch_size=PATCH,
                          mask_ratio=0.75),
            neck=dict(type="MAEPretrainDecoder", num_patches=(IMG // PATCH) ** 2,
                      patch_size=PATCH, in_chans=3, embed_dim=WIDTH, decoder_embed_dim=64,
                      decoder_depth=2, decoder_num_heads=2, mlp_ratio=4.0),
            head=dict(type="MAEPretrainHead", norm_pix=True, patch_size=PATCH,
                      loss=dict(type="PixelReconstructionLoss", criterion="L2")),
        ),
        pipeline=ONE_VIEW, optimizer=ADAMW,
    ),
    "simclr": dict(
        model=dict(
            type="SimCLR", backbone=dict(VIT), neck=_projector(),
            head=dict(type="ContrastiveHead", loss=dict(type="CrossEntropyLoss"),
                      temperature=0.2),
        ),
        pipeline=TWO_VIEWS, optimizer=ADAMW,
    ),
    "mocov3": dict(
        model=dict(
            type="MoCoV3", base_momentum=0.01,
            backbone=dict(type="MoCoV3ViT", arch=ARCH, img_size=IMG, patch_size=PATCH,
                          stop_grad_conv1=True, frozen_stages=-1),
            neck=_projector(layers=3),
            head=dict(type="MoCoV3Head", predictor=_projector(width=64), temperature=0.2,
                      loss=dict(type="CrossEntropyLoss", loss_weight=2 * 0.2)),
        ),
        pipeline=TWO_VIEWS, optimizer=ADAMW,
    ),
    "byol": dict(
        model=dict(
            type="BYOL", base_momentum=0.01,
            backbone=dict(VIT), neck=_projector(),
            head=dict(type="LatentPredictHead", predictor=_projector(width=64),
                      loss=dict(type="CosineSimilarityLoss")),
        ),
        pipeline=TWO_VIEWS, optimizer=ADAMW,
    ),
    "simmim": dict(
        model=dict(
            type="SimMIM",
            backbone=dict(type="SimMIMViT", arch=ARCH, img_size=IMG, patch_size=PATCH),
            neck=dict(type="SimMIMLinearDecoder", in_channels=WIDTH, encoder_stride=PATCH),
            head=dict(type="SimMIMHead", patch_size=PATCH,
                      loss=dict(type="PixelReconstructionLoss", criterion="L1", channel=3)),
        ),
        pipeline=[
            dict(type="RandomFlip", prob=0.5),
            dict(type="SimMIMMaskGenerator", input_size=IMG, mask_patch_size=2 * PATCH,
                 model_patch_size=PATCH, mask_ratio=0.6),
            dict(type="PackInputs", algorithm_keys=["mask"]),
        ],
        optimizer=ADAMW,
    ),
}  # fmt: skip


# --------------------------------------------------------------------------- configs
def _shapes(split: str, samples: int, pipeline: list) -> dict:
    return dict(type="ShapesDataset", num_samples=samples, num_classes=NUM_CLASSES,
                img_size=IMG, split=split, pipeline=pipeline)  # fmt: skip


def pretrain_config(name: str, work_dir: Path, samples: int, budget: float) -> dict:
    recipe = copy.deepcopy(METHODS[name])
    model = recipe["model"]
    model["data_preprocessor"] = dict(type="SelfSupDataPreprocessor", mean=MEAN, std=STD,
                                      to_rgb=True)  # fmt: skip
    return dict(
        model=model,
        work_dir=str(work_dir),
        train_dataloader=dict(batch_size=32, num_workers=0, persistent_workers=False,
                              dataset=_shapes("train", samples, recipe["pipeline"]),
                              sampler=dict(type="InfiniteSampler", shuffle=True)),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=100_000),
        optim_wrapper=dict(optimizer=recipe["optimizer"]),
        param_scheduler=[],
        custom_hooks=[dict(type="WallClockBudgetHook", seconds=budget)],
        default_hooks=dict(logger=dict(type="LoggerHook", interval=50),
                           checkpoint=dict(type="CheckpointHook", interval=100_000)),
        randomness=dict(seed=0),
        launcher="none",
    )  # fmt: skip


def probe_config(backbone: Path | None, work_dir: Path, samples: int, epochs: int) -> dict:
    init = None
    if backbone is not None:
        init = dict(type="Pretrained", checkpoint=str(backbone))
    test = [dict(type="PackInputs")]
    loader = dict(batch_size=200, num_workers=0, sampler=dict(type="DefaultSampler",
                  shuffle=False))  # fmt: skip
    return dict(
        model=dict(
            type="ImageClassifier",
            backbone=dict(VIT, frozen_stages=ARCH["num_layers"], out_type="avg_featmap",
                          init_cfg=init),
            neck=dict(type="ClsBatchNormNeck", input_features=WIDTH),
            head=dict(type="VisionTransformerClsHead", num_classes=NUM_CLASSES,
                      in_channels=WIDTH, loss=dict(type="CrossEntropyLoss")),
            data_preprocessor=dict(num_classes=NUM_CLASSES, mean=MEAN, std=STD, to_rgb=True),
        ),
        work_dir=str(work_dir),
        train_dataloader=dict(batch_size=64, num_workers=0,
                              dataset=_shapes("train", samples, ONE_VIEW),
                              sampler=dict(type="DefaultSampler", shuffle=True)),
        test_dataloader=dict(loader, dataset=_shapes("test", max(samples // 6, 100), test)),
        test_evaluator=dict(type="Accuracy", topk=(1,)),
        test_cfg=dict(),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=epochs),
        optim_wrapper=dict(optimizer=dict(type="LARS", lr=1.6, weight_decay=0.0,
                                          momentum=0.9)),
        param_scheduler=[dict(type="CosineAnnealingLR", T_max=epochs, by_epoch=True,
                              begin=0, end=epochs, convert_to_iter_based=True)],
        default_hooks=dict(logger=dict(type="LoggerHook", interval=50),
                           checkpoint=dict(type="CheckpointHook", interval=epochs)),
        randomness=dict(seed=0),
        launcher="none",
    )  # fmt: skip


# --------------------------------------------------------------------------- running
def _register_budget_hook() -> None:
    from vistra.engine.hooks import Hook
    from vistra.registry import HOOKS

    if HOOKS.get("WallClockBudgetHook") is not None:
        return

    @HOOKS.register_module()
    class WallClockBudgetHook(Hook):
        """Stop training at the first iteration that ends past ``seconds`` of training."""

        def __init__(self, seconds: float) -> None:
            self.seconds = seconds
            self.start = 0.0

        def before_train(self, runner) -> None:
            self.start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            if time.perf_counter() - self.start >= self.seconds:
                runner.train_loop.stop_training = True


def _runner(cfg: dict, purpose: str):
    from vistra.config import Config
    from vistra.engine.runner import Runner

    return Runner.from_config(Config(cfg, filename="selfsup_compare.py"), purpose=purpose)


def _quiet() -> None:
    logging.getLogger("vistra").handlers.clear()


def pretrain(name: str, root: Path, samples: int, budget: float) -> tuple[Path, float, int]:
    """(the backbone's weights, seconds of training, iterations)."""
    from tools.model_converters.extract_backbone_weights import convert

    work = root / name
    runner = _runner(pretrain_config(name, work, samples, budget), "train")
    start = time.perf_counter()
    try:
        runner.train()
    finally:
        _quiet()
    seconds = time.perf_counter() - start
    from vistra.checkpoint import save_checkpoint

    model = getattr(runner.model, "module", runner.model)
    ckpt = save_checkpoint({"meta": {"method": name}, "state_dict": model.state_dict()},
                           work / "pretrained.pth")  # fmt: skip
    backbone, _ = convert(str(ckpt), str(work / "backbone.pth"))
    return backbone, seconds, runner.iter


def probe(backbone: Path | None, work: Path, samples: int, epochs: int) -> float:
    """Train the probe, then test its last checkpoint as ``vistra test`` would."""
    cfg = probe_config(backbone, work, samples, epochs)
    runner = _runner(cfg, "train")
    try:
        runner.train()
    finally:
        _quiet()
    cfg["load_from"] = str(work / (work / "last_checkpoint").read_text().strip())
    tester = _runner(cfg, "test")
    try:
        metrics = tester.test()
    finally:
        _quiet()
    return float(metrics["accuracy/top1"])


def draw(rows: list[dict], baseline: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [r["method"] for r in rows]
    ax.bar(names, [r["top1"] for r in rows], color="#4c72b0")
    ax.axhline(baseline, color="#c44e52", linestyle="--", label=f"random init {baseline:.1f}")
    ax.axhline(100 / NUM_CLASSES, color="grey", linestyle=":", label="chance")
    ax.set_ylabel("linear-probe top-1 (%)")
    ax.set_title(f"same tiny ViT, {rows[0]['budget']:.0f} s of pre-training each")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="pre-training seconds each")
    parser.add_argument("--probe-epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=3000, help="shapes images per split")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--work-root", default=str(REPO / "work_dirs/benchmarks/selfsup_compare"))
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    import torch

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    _register_budget_hook()
    root = Path(args.work_root)
    rows = []
    baseline = probe(None, root / "probe_random", args.samples, args.probe_epochs)
    for name in methods:
        backbone, seconds, iters = pretrain(name, root, args.samples, args.budget)
        top1 = probe(backbone, root / f"probe_{name}", args.samples, args.probe_epochs)
        rows.append(dict(method=name, pretrain_s=seconds, iters=iters, top1=top1,
                         baseline=baseline, budget=args.budget))  # fmt: skip
        print(f"{name}: {iters} iterations in {seconds:.0f} s, probe top-1 {top1:.1f}", flush=True)
    header = (
        "| method | pre-train time (s) | iterations | probe top-1 (%) | random-init top-1 (%) |"
    )
    print(header)
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['method']} | {r['pretrain_s']:.0f} | {r['iters']} | {r['top1']:.1f} | "
              f"{r['baseline']:.1f} |")  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "selfsup_compare.json").write_text(json.dumps(rows, indent=1))
    draw(rows, baseline, root / "selfsup_compare.png")
    print(f"figure: {root / 'selfsup_compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
