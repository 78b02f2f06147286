"""Per-iteration overhead of vistra's runner against a bare PyTorch loop.

The same model (initial weights copied), the same batches (no augmentation, fixed order)
and the same optimizer are trained by a hand-written loop and by ``Runner`` with its
default hooks (timer, logger, param scheduler, checkpoint, sampler seed), interleaved over
several repeats in one process. Prints the median per-iteration time ratio (target
<= 1.05) and checks that the first 20 losses match the bare loop to 5 decimals.

    python benchmarks/overhead.py [--iters 60] [--repeats 5] [--batch-size 32] [--profile]

``--profile`` then runs each loop once more under cProfile and prints where vistra's run
spends Python time that the bare loop does not: the functions of vistra's own files by
self time, and both loops' totals (issue #20's first step).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import logging
import pstats
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from vistra.config import Config
from vistra.data.collate import pseudo_collate
from vistra.engine.hooks import Hook
from vistra.engine.runner import Runner
from vistra.registry import DATASETS, HOOKS, MODELS

MEAN, STD = [127.5] * 3, [64.0] * 3
MODEL = dict(
    type="ImageClassifier",
    backbone=dict(
        type="ResNet_CIFAR", depth=18, stem_channels=16, base_channels=16, out_indices=(3,)
    ),
    neck=dict(type="GlobalAveragePooling"),
    head=dict(type="LinearClsHead", num_classes=6, in_channels=128),
    data_preprocessor=dict(type="ClsDataPreprocessor", num_classes=6, mean=MEAN, std=STD),
)
DATASET = dict(
    type="ShapesDataset",
    num_samples=4096,
    num_classes=6,
    img_size=32,
    seed=0,
    pipeline=[dict(type="PackInputs")],
)


@HOOKS.register_module()
class _StepTimes(Hook):
    """Wall time of iterations ``skip`` .. end, and every loss."""

    priority = "LOWEST"

    def __init__(self, skip: int) -> None:
        self.skip = skip
        self.start = self.end = 0.0
        self.losses: list[float] = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.skip:
            self.start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(outputs["loss"])
        self.end = time.perf_counter()


def bare_loop(
    model: torch.nn.Module, dataset, iters: int, batch_size: int, lr: float, skip: int
) -> tuple[float, list[float]]:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=pseudo_collate
    )
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    model.train()
    losses, start, it = [], 0.0, 0
    while it < iters:
        for batch in loader:
            if it == skip:
                start = time.perf_counter()
            x = (torch.stack(batch["inputs"]).float() - mean) / std
            y = torch.cat([s.gt_label for s in batch["data_samples"]])
            logits = model.head.fc(model.neck(model.backbone(x))[-1])
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            it += 1
            if it == iters:
                break
    return (time.perf_counter() - start) / (iters - skip), losses


def vistra_loop(
    model: torch.nn.Module, iters: int, batch_size: int, lr: float, skip: int
) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as work_dir:
        cfg = Config(
            dict(
                model=MODEL,
                work_dir=work_dir,
                train_dataloader=dict(
                    batch_size=batch_size,
                    num_workers=0,
                    dataset=DATASET,
                    sampler=dict(type="DefaultSampler", shuffle=False),
                ),
                train_cfg=dict(by_epoch=False, max_iters=iters),
                optim_wrapper=dict(
                    optimizer=dict(type="SGD", lr=lr, momentum=0.9, weight_decay=1e-4)
                ),
                default_hooks=dict(
                    logger=dict(type="LoggerHook", interval=10),
                    checkpoint=dict(type="CheckpointHook", interval=10**6, save_last=False),
                ),
                custom_hooks=[dict(type="_StepTimes", skip=skip)],
                randomness=dict(seed=0),
                log_level="WARNING",
            )
        )
        runner = Runner.from_config(cfg)
        runner.model.load_state_dict(model.state_dict())
        runner.model.init_weights = lambda: None  # keep the copied weights
        runner.train()
        timer = next(h for h in runner.hooks if isinstance(h, _StepTimes))
        logging.getLogger("vistra").handlers.clear()
        return (timer.end - timer.start) / (iters - skip), timer.losses


def print_profile(model, dataset, args: argparse.Namespace, lr: float, skip: int) -> None:
    """Both loops once under cProfile; vistra's own functions by self time."""
    stats = {}
    for name, run in (
        ("bare", lambda: bare_loop(copy.deepcopy(model), dataset, args.iters, args.batch_size, lr, skip)),
        ("vistra", lambda: vistra_loop(copy.deepcopy(model), args.iters, args.batch_size, lr, skip)),
    ):  # fmt: skip
        profiler = cProfile.Profile()
        profiler.runcall(run)
        stats[name] = pstats.Stats(profiler, stream=io.StringIO())
    totals = {name: st.total_tt for name, st in stats.items()}
    print(
        f"\nprofile, {args.iters} iterations each: bare {totals['bare']:.2f} s, vistra {totals['vistra']:.2f} s"
    )
    own = [
        (tt, calls, f"{func[0].split('/vistra/', 1)[-1]}:{func[1]}({func[2]})")
        for func, (calls, _, tt, _, _) in stats["vistra"].stats.items()
        if "/vistra/" in func[0] and "/benchmarks/" not in func[0]
    ]
    own.sort(reverse=True)
    print(
        f"vistra's own functions, self time: {sum(t for t, _, _ in own):.3f} s in all; the top 20:"
    )
    for tt, calls, where in own[:20]:
        print(f"  {tt * 1000:8.1f} ms  {calls:7d} calls  {where}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="then profile both loops once")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = MODELS.build(MODEL)
    model.init_weights()
    dataset = DATASETS.build(DATASET)
    lr, skip = 0.05, 5
    ratios, bare_times, vistra_times = [], [], []
    for repeat in range(args.repeats):
        t_bare, bare_losses = bare_loop(
            copy.deepcopy(model), dataset, args.iters, args.batch_size, lr, skip
        )
        t_vistra, vistra_losses = vistra_loop(
            copy.deepcopy(model), args.iters, args.batch_size, lr, skip
        )
        ratios.append(t_vistra / t_bare)
        bare_times.append(t_bare)
        vistra_times.append(t_vistra)
        print(
            f"repeat {repeat}: bare {t_bare * 1000:.2f} ms/iter, vistra {t_vistra * 1000:.2f} ms/iter, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    mismatch = [
        (i, a, b)
        for i, (a, b) in enumerate(zip(bare_losses[:20], vistra_losses[:20]))
        if round(a, 5) != round(b, 5)
    ]
    ratio = statistics.median(ratios)
    print(
        f"\nmedian per-iteration time: bare {statistics.median(bare_times) * 1000:.2f} ms, vistra {statistics.median(vistra_times) * 1000:.2f} ms"
    )
    print(f"ratio vistra / bare = {ratio:.3f} (target <= 1.05)")
    print(
        f"first 20 losses equal to 5 decimals: {'yes' if not mismatch else 'NO: ' + str(mismatch[:3])}"
    )
    if args.profile:
        print_profile(model, dataset, args, lr, skip)
    return 0 if ratio <= 1.05 and not mismatch else 1


if __name__ == "__main__":
    sys.exit(main())
