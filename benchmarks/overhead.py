"""What vistra's runner costs on top of a bare PyTorch loop, on the same model and data.

Both train ResNet_CIFAR-18 (initial weights copied) on the same folder of generated PNGs
(``CustomDataset`` layout, read in the same order, no augmentation) with the same SGD,
batch size and data-loader workers (persistent, as OpenMMLab configs set them). The bare
loop is what a user would write: a ``Dataset`` that decodes each PNG, a ``DataLoader``,
normalise, forward, cross-entropy, backward, step. vistra runs ``Runner`` with its default
hooks (timer, logger, param scheduler, checkpoint, sampler seed) from a config.

Each run is timed from before anything is built (dataset, loader, model, optimizer; for
vistra the whole ``Runner``) to the end of its last iteration, in one process, the two
interleaved (order alternating) over several repeats. Printed, as medians of the repeats'
vistra/bare ratios:

* steady-state seconds per iteration (iterations ``skip`` .. end),
* total wall (build + all iterations),
* time to the end of the first iteration, also as a difference in seconds.

Targets (issue #20): steady and total <= 1.02x, first iteration <= bare + 0.1 s. Exits 1
when one is missed or the first 20 losses differ from the bare loop's at 5 decimals.

    python benchmarks/overhead.py [--images 1000] [--iters 60] [--repeats 5]
                                  [--batch-size 32] [--workers 2] [--profile]

``--profile`` then runs each loop once more under cProfile and prints where vistra's run
spends Python time that the bare loop does not: the functions of vistra's own files by
self time, and both loops' totals.
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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vistra.config import Config
from vistra.data.datasets.shapes import write_shapes_dataset
from vistra.engine.allocator import tune_cpu_allocator
from vistra.engine.hooks import Hook
from vistra.engine.runner import Runner
from vistra.registry import HOOKS, MODELS

MEAN, STD = [127.5] * 3, [64.0] * 3
NUM_CLASSES = 6
MODEL = dict(
    type="ImageClassifier",
    backbone=dict(
        type="ResNet_CIFAR", depth=18, stem_channels=16, base_channels=16, out_indices=(3,)
    ),
    neck=dict(type="GlobalAveragePooling"),
    head=dict(type="LinearClsHead", num_classes=NUM_CLASSES, in_channels=128),
    data_preprocessor=dict(type="ClsDataPreprocessor", num_classes=NUM_CLASSES, mean=MEAN, std=STD),
)
LR = 0.05
TARGET_RATIO, TARGET_FIRST_S = 1.02, 0.1


@dataclass
class RunTimes:
    """One run, seconds from before anything was built."""

    iter_ends: list[float] = field(default_factory=list)  # end of each iteration
    losses: list[float] = field(default_factory=list)

    def first(self) -> float:
        return self.iter_ends[0]

    def total(self) -> float:
        return self.iter_ends[-1]

    def steady(self, skip: int) -> float:
        return (self.iter_ends[-1] - self.iter_ends[skip - 1]) / (len(self.iter_ends) - skip)


@dataclass
class Setup:
    data_root: str
    state: dict
    iters: int
    batch_size: int
    workers: int


def make_images(root: Path, count: int) -> str:
    """``count`` 32-px PNGs in the CustomDataset layout, listed in ``meta/train.txt``."""
    write_shapes_dataset(root, "cls", num_train=count, num_val=0, img_size=32, seed=0)
    return str(root)


class PngFolder(torch.utils.data.Dataset):
    """The bare loop's dataset: the files of ``meta/train.txt``, decoded as vistra does
    (BGR, HWC uint8 -> CHW uint8 tensor)."""

    def __init__(self, data_root: str) -> None:
        lines = Path(data_root, "meta", "train.txt").read_text().split("\n")
        self.items = [
            (str(Path(data_root, "train", name)), int(label))
            for name, label in (line.rsplit(" ", 1) for line in lines if line)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        return torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1].transpose(2, 0, 1))), label


def bare_loop(setup: Setup) -> RunTimes:
    start, times = time.perf_counter(), RunTimes()
    loader = torch.utils.data.DataLoader(
        PngFolder(setup.data_root),
        batch_size=setup.batch_size,
        shuffle=False,
        num_workers=setup.workers,
        persistent_workers=setup.workers > 0,
    )
    model = MODELS.build(MODEL)
    model.load_state_dict(setup.state)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    model.train()
    while len(times.losses) < setup.iters:
        for images, labels in loader:
            x = (images.float() - mean) / std
            logits = model.head.fc(model.neck(model.backbone(x))[-1])
            loss = F.cross_entropy(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.losses.append(float(loss.detach()))
            times.iter_ends.append(time.perf_counter() - start)
            if len(times.losses) == setup.iters:
                break
    return times


@HOOKS.register_module()
class _IterEnds(Hook):
    """Records the end of every iteration, relative to ``start``, and its loss."""

    priority = "LOWEST"

    def __init__(self, start: float) -> None:
        self.start = start
        self.times = RunTimes()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.times.losses.append(outputs["loss"])
        self.times.iter_ends.append(time.perf_counter() - self.start)


def vistra_config(setup: Setup, work_dir: str, start: float) -> Config:
    dataset = dict(
        type="CustomDataset",
        data_root=setup.data_root,
        ann_file="meta/train.txt",
        data_prefix="train",
        pipeline=[dict(type="LoadImageFromFile"), dict(type="PackInputs")],
    )
    return Config(
        dict(
            model=MODEL,
            work_dir=work_dir,
            train_dataloader=dict(
                batch_size=setup.batch_size,
                num_workers=setup.workers,
                persistent_workers=setup.workers > 0,
                dataset=dataset,
                sampler=dict(type="DefaultSampler", shuffle=False),
            ),
            train_cfg=dict(by_epoch=False, max_iters=setup.iters),
            optim_wrapper=dict(optimizer=dict(type="SGD", lr=LR, momentum=0.9, weight_decay=1e-4)),
            default_hooks=dict(
                logger=dict(type="LoggerHook", interval=10),
                checkpoint=dict(type="CheckpointHook", interval=10**6, save_last=False),
            ),
            custom_hooks=[dict(type="_IterEnds", start=start)],
            randomness=dict(seed=0),
            log_level="WARNING",
        )
    )


def vistra_loop(setup: Setup) -> RunTimes:
    with tempfile.TemporaryDirectory() as work_dir:
        start = time.perf_counter()
        runner = Runner.from_config(vistra_config(setup, work_dir, start))
        runner.model.load_state_dict(setup.state)
        runner.model.init_weights = lambda: None  # keep the copied weights, as the bare loop
        runner.train()
        timer = next(h for h in runner.hooks if isinstance(h, _IterEnds))
        logging.getLogger("vistra").handlers.clear()
        return timer.times


def print_profile(setup: Setup) -> None:
    """Both loops once under cProfile; vistra's own functions by self time."""
    stats = {}
    for name, run in (("bare", bare_loop), ("vistra", vistra_loop)):
        profiler = cProfile.Profile()
        profiler.runcall(run, setup)
        stats[name] = pstats.Stats(profiler, stream=io.StringIO())
    totals = {name: st.total_tt for name, st in stats.items()}
    print(
        f"\nprofile (main process), {setup.iters} iterations each: "
        f"bare {totals['bare']:.2f} s, vistra {totals['vistra']:.2f} s"
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


def summarise(bare: list[RunTimes], ours: list[RunTimes], skip: int) -> bool:
    """Print the medians and ratios; True when every target holds."""

    def median_ratio(measure) -> float:
        return statistics.median(measure(v) / measure(b) for b, v in zip(bare, ours))

    def median_ms(runs, measure) -> float:
        return statistics.median(measure(r) for r in runs) * 1000

    steady = median_ratio(lambda r: r.steady(skip))
    total = median_ratio(RunTimes.total)
    first_extra = statistics.median(v.first() - b.first() for b, v in zip(bare, ours))
    rows = (
        ("steady s/iter", lambda r: r.steady(skip), f"{steady:.3f}x", steady <= TARGET_RATIO),
        ("total wall", RunTimes.total, f"{total:.3f}x", total <= TARGET_RATIO),
        ("first iteration", RunTimes.first, f"{first_extra:+.3f} s", first_extra <= TARGET_FIRST_S),
    )  # fmt: skip
    print(f"\n{'medians':<16} {'bare ms':>10} {'vistra ms':>10} {'vistra/bare':>12}  target")
    for name, measure, ratio, ok in rows:
        target = f"+{TARGET_FIRST_S} s" if name == "first iteration" else f"{TARGET_RATIO}x"
        print(
            f"{name:<16} {median_ms(bare, measure):10.1f} {median_ms(ours, measure):10.1f} "
            f"{ratio:>12}  <= {target} {'ok' if ok else 'MISSED'}"
        )
    return all(ok for *_, ok in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="then profile both loops once")
    args = parser.parse_args(argv)
    skip = min(5, args.iters - 1)
    # what vistra train does first (vistra/engine/allocator.py), here for both loops alike:
    # they share this process, so the ratio measures the runner, not the allocator
    print(f"CPU allocator: {tune_cpu_allocator()}")
    torch.manual_seed(0)
    model = MODELS.build(MODEL)
    model.init_weights()
    with tempfile.TemporaryDirectory() as root:
        setup = Setup(
            make_images(Path(root), args.images),
            copy.deepcopy(model.state_dict()),
            args.iters,
            args.batch_size,
            args.workers,
        )
        for warm_up in (bare_loop, vistra_loop):  # first calls of torch's kernels, imports
            warm_up(replace(setup, iters=2))
        bare, ours = [], []
        for repeat in range(args.repeats):
            order = (bare_loop, vistra_loop) if repeat % 2 == 0 else (vistra_loop, bare_loop)
            for run in order:
                (bare if run is bare_loop else ours).append(run(setup))
            print(
                f"repeat {repeat}: steady bare {bare[-1].steady(skip) * 1000:.2f} ms/iter, "
                f"vistra {ours[-1].steady(skip) * 1000:.2f} ms/iter; total bare "
                f"{bare[-1].total():.2f} s, vistra {ours[-1].total():.2f} s; first iteration "
                f"bare {bare[-1].first():.2f} s, vistra {ours[-1].first():.2f} s",
                flush=True,
            )
        met = summarise(bare, ours, skip)
        mismatch = [
            (i, a, b)
            for i, (a, b) in enumerate(zip(bare[-1].losses[:20], ours[-1].losses[:20]))
            if round(a, 5) != round(b, 5)
        ]
        print(
            f"first 20 losses equal to 5 decimals: {'yes' if not mismatch else 'NO: ' + str(mismatch[:3])}"
        )
        if args.profile:
            print_profile(setup)
    return 0 if met and not mismatch else 1


if __name__ == "__main__":
    sys.exit(main())
