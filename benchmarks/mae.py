"""MAE pre-training speed on CPU: ViT-Tiny/16 at 224 px, mask ratio 0.75 against 0.0.

One model (MAEViT ``deit-tiny`` encoder, a light decoder) trains with the real step
(``vistra.engine.loops.train_step``: preprocess, forward, loss, backward, AdamW step) on
fixed random images. Only the encoder's ``mask_ratio`` changes between the two settings:
at 0.75 the encoder runs on 49 of 196 patches, at 0.0 on all of them; the decoder always
sees every patch. Settings alternate over ``--repeats`` rounds in one process, and the
images/s of the median step (and of the fastest, less sensitive to a busy machine) of
each setting are printed with their ratio (the encoder-only speed-up of MAE).

    python benchmarks/mae.py [--batch-size 8] [--steps 2] [--repeats 6] [--threads N]

The default run takes about half a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from vistra.engine.loops import train_step
from vistra.engine.optim import OptimWrapper
from vistra.registry import MODELS

RATIOS = (0.75, 0.0)


def build_model(decoder_dim: int, decoder_depth: int) -> torch.nn.Module:
    model = MODELS.build(
        dict(
            type="MAE",
            backbone=dict(type="MAEViT", arch="deit-tiny", patch_size=16, mask_ratio=0.75),
            neck=dict(
                type="MAEPretrainDecoder",
                num_patches=196,
                patch_size=16,
                in_chans=3,
                embed_dim=192,
                decoder_embed_dim=decoder_dim,
                decoder_depth=decoder_depth,
                decoder_num_heads=4,
                mlp_ratio=4.0,
            ),
            head=dict(
                type="MAEPretrainHead",
                norm_pix=True,
                patch_size=16,
                loss=dict(type="PixelReconstructionLoss", criterion="L2"),
            ),
            data_preprocessor=dict(
                type="SelfSupDataPreprocessor",
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                to_rgb=True,
            ),
            init_cfg=[
                dict(type="Xavier", layer="Linear", distribution="uniform"),
                dict(type="Constant", layer="LayerNorm", val=1.0, bias=0.0),
            ],
        )
    )
    model.init_weights()
    return model.train()


def step_times(model, optim_wrapper, batch: dict, steps: int) -> list[float]:
    """Seconds of each of ``steps`` training steps (after one untimed warm-up step)."""
    train_step(model, batch, optim_wrapper)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(model, batch, optim_wrapper)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per setting and round")
    parser.add_argument("--repeats", type=int, default=6, help="rounds of both settings")
    parser.add_argument("--decoder-dim", type=int, default=128)
    parser.add_argument("--decoder-depth", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.decoder_dim, args.decoder_depth)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=1.5e-4,
        betas=(0.9, 0.95),
        weight_decay=0.05,
    )
    optim_wrapper = OptimWrapper(optimizer)
    images = torch.randint(0, 256, (args.batch_size, 3, 224, 224), dtype=torch.uint8)
    batch = {"inputs": images, "data_samples": None}

    times: dict[float, list[float]] = {r: [] for r in RATIOS}
    for round_ in range(args.repeats):
        for ratio in RATIOS if round_ % 2 == 0 else RATIOS[::-1]:
            model.backbone.mask_ratio = ratio
            times[ratio] += step_times(model, optim_wrapper, batch, args.steps)
    print(
        f"MAE pre-training, ViT-Tiny/16 at 224 px, batch {args.batch_size}, decoder "
        f"{args.decoder_depth} x {args.decoder_dim}, {torch.get_num_threads()} CPU thread(s), "
        f"{args.repeats} alternating rounds x {args.steps} steps (forward + backward + AdamW)"
    )
    speed = {}
    for ratio in RATIOS:
        median = args.batch_size / statistics.median(times[ratio])
        best = args.batch_size / min(times[ratio])
        speed[ratio] = (median, best)
        print(
            f"  mask_ratio={ratio:<4}  {median:7.2f} images/s median step  "
            f"({best:.2f} fastest step)"
        )
    (masked, masked_best), (full, full_best) = (speed[r] for r in RATIOS)
    print(
        f"  speed-up of masking 75% of the patches: {masked / full:.2f}x median "
        f"({masked_best / full_best:.2f}x fastest)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
