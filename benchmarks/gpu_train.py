"""GPU training speed and memory: vistra's Runner against a bare PyTorch loop, one process.

Three measurements, each for vistra (``Runner`` from a config, default hooks) and for a
bare loop on the same model (weights copied) and the same optimizer (SGD, momentum 0.9):

* ResNet-50, ImageNet shape (``--size`` px, 1000 classes), training images/s with
  synthetic uint8 images already on the device (the model and the step alone);
* the same with real decoded data: JPEGs generated to a temporary folder, read by
  vistra's pipeline (``LoadImageFromFile``, ``RandomResizedCrop``, ``RandomFlip``,
  ``PackInputs``) and by the bare loop's ``transforms.v2`` dataset (PIL decoding, as
  torchvision's ``ImageFolder``), both with ``--workers`` loader workers, pinned memory;
* PSPNet R50-D8 at 512x1024 (Cityscapes, 2 images per GPU): peak training memory
  (``torch.cuda.max_memory_allocated``) and images/s, synthetic data on the device.

Images/s are timed between a CUDA synchronisation after ``--warmup`` iterations and one
after the last. ``--amp`` runs vistra with ``AmpOptimWrapper`` (what ``vistra train
--amp`` sets: fp16 with dynamic loss scaling on CUDA, bf16 on CPU) and the bare loop with
the same autocast and ``GradScaler``; ``--channels-last`` sets vistra's
``channels_last=True`` and converts the bare model and batches; ``--compile`` sets
``compile=True`` and ``torch.compile``s the bare loop's forward. cuDNN benchmark is on
for both (vistra: ``env_cfg.cudnn_benchmark``). Printed: one table, vistra/bare ratios.
Targets: images/s >= 0.97x and peak memory <= 1.05x of the bare loop's, and the first
losses of the synthetic classification runs equal (same weights, same batch); exit 1
when one is missed.

    python benchmarks/gpu_train.py [--iters 50] [--warmup 10] [--batch-size 64]
        [--size 224] [--workers 8] [--amp] [--channels-last] [--compile]
    python benchmarks/gpu_train.py --device cpu --tiny   # 2 iterations each at 32 px

Without a CUDA device (and without ``--device cpu``) it prints one line saying so and
exits 0. ``--tiny`` runs every loop for 2 iterations at 32 px (PSPNet at 32x64, both
ResNets at depth 18, at most 1 loader worker) on the chosen device, so the measuring code is
exercised on CPU; memory is then "n/a on CPU". Tiny figures mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import gc
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vistra.config import Config
from vistra.data.structures import DataSample, PixelData
from vistra.dist.model_wrap import revert_sync_batchnorm
from vistra.engine.hooks import Hook
from vistra.engine.runner import Runner
from vistra.registry import DATASETS, HOOKS, MODELS

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
LR = 0.01
TARGET_SPEED, TARGET_MEMORY, LOSS_RTOL = 0.97, 1.05, dict(fp32=1e-3, amp=2e-2)


@dataclass(frozen=True)
class Settings:
    device: torch.device
    iters: int
    warmup: int
    batch_size: int
    size: int  # classification crop
    seg_size: tuple[int, int]
    seg_batch: int
    workers: int
    images: int  # JPEGs written for the real-data runs
    depth: int  # of both ResNets: 50, or 18 for --tiny
    amp: bool
    channels_last: bool
    compile: bool


@dataclass
class Run:
    """One loop's figures: images/s between the two synchronised clocks, peak memory."""

    images_per_s: float = 0.0
    peak_mib: float | None = None
    losses: list[Any] = field(default_factory=list)

    def first_loss(self) -> float:
        return float(self.losses[0])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


class Clock:
    """Starts after ``warmup`` iterations and stops after ``iters``, synchronised."""

    def __init__(self, s: Settings, batch_size: int) -> None:
        self.s, self.batch_size, self.run = s, batch_size, Run()
        self.start = 0.0

    def tick(self, done: int, loss: Any) -> None:
        self.run.losses.append(loss)  # a tensor: no synchronisation per step
        if done == self.s.warmup:
            sync(self.s.device)
            self.start = time.perf_counter()
        elif done == self.s.iters:
            sync(self.s.device)
            timed = (self.s.iters - self.s.warmup) * self.batch_size
            self.run.images_per_s = timed / (time.perf_counter() - self.start)
            self.run.peak_mib = peak_mib(self.s.device)


# ----------------------------------------------------------------------------- data
def device_batch(
    device: str, shape: tuple[int, int], batch: int, classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed uint8 BGR images and labels on the device (segmentation: label maps)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, *shape), dtype=torch.uint8, generator=gen)
    label_shape = (batch,) if classes == 1000 else (batch, 1, *shape)
    labels = torch.randint(0, classes, label_shape, generator=gen)
    return images.to(device), labels.to(device)


@DATASETS.register_module(force=True)
class _DeviceImages(torch.utils.data.Dataset):
    """vistra's view of :func:`device_batch`: sample ``i`` is image ``i % batch``."""

    def __init__(self, device: str, shape: list, batch: int, classes: int, length: int) -> None:
        self.images, self.labels = device_batch(device, tuple(shape), batch, classes)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        i = index % len(self.images)
        sample = DataSample()
        if self.labels.dim() == 1:
            sample.set_gt_label(self.labels[i : i + 1])
        else:
            sample.gt_sem_seg = PixelData(data=self.labels[i])
        return {"inputs": self.images[i], "data_samples": sample}


def write_jpegs(root: Path, count: int, size: int) -> None:
    """``count`` smooth random JPEGs of about ImageNet's shape in CustomDataset layout."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    lines = []
    w, h = int(size * 1.7), int(size * 1.3)
    for i in range(count):
        low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((w, h), Image.BICUBIC)
        noisy = np.asarray(img, dtype=np.int16) + rng.integers(-8, 9, (h, w, 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(
            root / "train" / f"{i:05d}.jpg", quality=90
        )
        lines.append(f"{i:05d}.jpg {i % 1000}")
    (root / "meta").mkdir()
    (root / "meta" / "train.txt").write_text("\n".join(lines) + "\n")


class JpegFolder(torch.utils.data.Dataset):
    """The bare loop's dataset, as torchvision's ``ImageFolder`` and reference training
    scripts read ImageNet: PIL decoding, ``transforms.v2`` crop and flip, CHW uint8 RGB."""

    def __init__(self, root: Path, size: int) -> None:
        from torchvision.transforms import v2

        lines = (root / "meta" / "train.txt").read_text().split()
        self.items = [(str(root / "train" / n), int(c)) for n, c in zip(lines[::2], lines[1::2])]
        self.transform = v2.Compose(
            [v2.RandomResizedCrop(size), v2.RandomHorizontalFlip(), v2.PILToTensor()]
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        with Image.open(path) as img:
            return self.transform(img.convert("RGB")), label


def jpeg_batches(s: Settings, root: Path) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    loader = torch.utils.data.DataLoader(
        JpegFolder(root, s.size),
        batch_size=s.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=s.workers,
        persistent_workers=s.workers > 0,
        pin_memory=s.device.type == "cuda",
    )
    while True:
        for images, labels in loader:
            yield images.to(s.device, non_blocking=True), labels.to(s.device, non_blocking=True)


# ----------------------------------------------------------------------------- bare loops
def cls_model_cfg(s: Settings) -> dict:
    """MMPretrain's ``resnet50.py`` model with the ImageNet data preprocessor."""
    return dict(
        type="ImageClassifier",
        backbone=dict(type="ResNet", depth=s.depth, out_indices=(3,), style="pytorch"),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(type="LinearClsHead", num_classes=1000, in_channels={18: 512, 50: 2048}[s.depth]),
        data_preprocessor=dict(num_classes=1000, mean=MEAN, std=STD, to_rgb=True),
    )


def seg_model_cfg(s: Settings) -> dict:
    """``configs/_base_/models/pspnet_r50-d8.py`` (R18-D8's widths for depth 18)."""
    cfg = Config.fromfile(str(REPO / "configs/_base_/models/pspnet_r50-d8.py"))
    model = copy.deepcopy(dict(cfg["model"]))
    model["pretrained"] = None  # no download: both loops start from the same random weights
    model["data_preprocessor"] = dict(model["data_preprocessor"], size=list(s.seg_size))
    if s.depth == 18:
        model["backbone"] = dict(model["backbone"], depth=18)
        model["decode_head"] = dict(model["decode_head"], in_channels=512, channels=128)
        model["auxiliary_head"] = dict(model["auxiliary_head"], in_channels=256, channels=64)
    return model


def cls_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model.head.fc(model.neck(model.backbone(x))[-1]), y)


def seg_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSPNet's decode loss plus 0.4 x its FCN auxiliary loss, at the label's size."""
    feats = model.extract_feat(x)
    loss = x.new_zeros(())
    for head, weight in ((model.decode_head, 1.0), (model.auxiliary_head, 0.4)):
        logits = F.interpolate(head(feats), y.shape[-2:], mode="bilinear", align_corners=False)
        loss = loss + weight * F.cross_entropy(logits, y.squeeze(1), ignore_index=255)
    return loss


class BareStep:
    """normalise, forward, loss, backward, step: autocast and GradScaler as vistra's
    ``AmpOptimWrapper`` uses them, ``torch.compile`` and channels_last when asked."""

    def __init__(self, s: Settings, model_cfg: dict, state: dict, loss_fn: Callable) -> None:
        self.s = s
        model = revert_sync_batchnorm(MODELS.build(copy.deepcopy(model_cfg)))
        model.load_state_dict(state)
        model.to(s.device)
        if s.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model.train()
        self.loss_fn = torch.compile(loss_fn) if s.compile else loss_fn
        self.opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4)
        cuda = s.device.type == "cuda"
        self.dtype = (torch.float16 if cuda else torch.bfloat16) if s.amp else None
        self.scaler = torch.amp.GradScaler("cuda") if s.amp and cuda else None
        self.mean = torch.tensor(MEAN, device=s.device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=s.device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, bgr: bool) -> torch.Tensor:
        x = (images.flip(1) if bgr else images).float().sub_(self.mean).div_(self.std)
        if self.s.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.s.device.type, self.dtype, enabled=self.dtype is not None):
            loss = self.loss_fn(self.model, x, labels)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        return loss.detach()


def bare_run(
    s: Settings,
    model_cfg: dict,
    state: dict,
    loss_fn: Callable,
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]],
    batch: int,
    bgr: bool,
) -> Run:
    """``batches`` is called after the memory counters are reset, so the data the bare
    loop holds is counted as vistra's dataset is."""
    fresh_memory(s.device)
    torch.backends.cudnn.benchmark = True
    step = BareStep(s, model_cfg, state, loss_fn)
    clock, source = Clock(s, batch), batches()
    for done in range(1, s.iters + 1):
        images, labels = next(source)
        clock.tick(done, step(images, labels, bgr))
    return clock.run


def on_device(s: Settings, shape: tuple, batch: int, classes: int) -> Callable[[], Iterator]:
    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        fixed = device_batch(str(s.device), shape, batch, classes)
        while True:
            yield fixed

    return batches


# ----------------------------------------------------------------------------- vistra
@HOOKS.register_module(force=True)
class _ClockHook(Hook):
    priority = "LOWEST"
    clock: Clock | None = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.clock.tick(runner.iter + 1, outputs.get("loss"))


def vistra_cfg(s: Settings, model_cfg: dict, loader: dict, work_dir: str) -> Config:
    optim = dict(optimizer=dict(type="SGD", lr=LR, momentum=0.9, weight_decay=1e-4))
    if s.amp:  # what `vistra train --amp` sets
        optim.update(type="AmpOptimWrapper", loss_scale="dynamic")
    return Config(
        dict(
            model=model_cfg,
            work_dir=work_dir,
            train_dataloader=dict(sampler=dict(type="DefaultSampler", shuffle=True), **loader),
            train_cfg=dict(by_epoch=False, max_iters=s.iters),
            optim_wrapper=optim,
            env_cfg=dict(cudnn_benchmark=True),
            default_hooks=dict(
                logger=dict(type="LoggerHook", interval=100),
                checkpoint=dict(type="CheckpointHook", interval=10**6, save_last=False),
            ),
            custom_hooks=[dict(type="_ClockHook")],
            randomness=dict(seed=0),
            log_level="WARNING",
            channels_last=s.channels_last,
            compile=s.compile,
        )
    )


def vistra_run(s: Settings, model_cfg: dict, state: dict, loader: dict, batch: int) -> Run:
    from vistra.dist.launch import DistInfo

    fresh_memory(s.device)
    with tempfile.TemporaryDirectory() as work_dir:
        cfg = vistra_cfg(s, model_cfg, dict(loader, batch_size=batch), work_dir)
        runner = Runner.from_config(cfg, DistInfo(device=s.device))
        runner.model.load_state_dict(state)
        runner.model.init_weights = lambda: None  # keep the copied weights, as the bare loop
        hook = next(h for h in runner.hooks if isinstance(h, _ClockHook))
        hook.clock = Clock(s, batch)
        runner.train()
        logging.getLogger("vistra").handlers.clear()
        return hook.clock.run


def device_loader(s: Settings, shape: tuple, batch: int, classes: int) -> dict:
    dataset = dict(
        type="_DeviceImages",
        device=str(s.device),
        shape=list(shape),
        batch=batch,
        classes=classes,
        length=batch * (s.iters + 1),
    )
    # device tensors: no workers, nothing to pin
    return dict(num_workers=0, pin_memory=False, dataset=dataset)


def jpeg_loader(s: Settings, root: Path) -> dict:
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="RandomResizedCrop", scale=s.size),
        dict(type="RandomFlip", prob=0.5, direction="horizontal"),
        dict(type="PackInputs"),
    ]
    dataset = dict(
        type="CustomDataset",
        data_root=str(root),
        ann_file="meta/train.txt",
        data_prefix="train",
        pipeline=pipeline,
    )
    return dict(num_workers=s.workers, persistent_workers=s.workers > 0, dataset=dataset)


# ----------------------------------------------------------------------------- report
def initial_state(model_cfg: dict) -> dict:
    model = MODELS.build(copy.deepcopy(model_cfg))
    model.init_weights()
    return model.state_dict()


def measure(s: Settings, root: Path) -> list[tuple[str, Run, Run]]:
    torch.manual_seed(0)
    cls_cfg, seg_cfg = cls_model_cfg(s), seg_model_cfg(s)
    cls_state, seg_state = initial_state(cls_cfg), initial_state(seg_cfg)
    square, b = (s.size, s.size), s.batch_size
    rows = []
    bare = bare_run(s, cls_cfg, cls_state, cls_loss, on_device(s, square, b, 1000), b, True)
    ours = vistra_run(s, cls_cfg, cls_state, device_loader(s, square, b, 1000), b)
    rows.append((f"ResNet-{s.depth}, data on the device", bare, ours))
    write_jpegs(root, s.images, s.size)
    bare = bare_run(s, cls_cfg, cls_state, cls_loss, lambda: jpeg_batches(s, root), b, False)
    ours = vistra_run(s, cls_cfg, cls_state, jpeg_loader(s, root), b)
    rows.append((f"ResNet-{s.depth}, decoded JPEGs", bare, ours))
    shape, b = s.seg_size, s.seg_batch
    bare = bare_run(s, seg_cfg, seg_state, seg_loss, on_device(s, shape, b, 19), b, True)
    ours = vistra_run(s, seg_cfg, seg_state, device_loader(s, shape, b, 19), b)
    rows.append((f"PSPNet-R{s.depth}-D8 {shape[0]}x{shape[1]}", bare, ours))
    return rows


def report(s: Settings, rows: list[tuple[str, Run, Run]]) -> bool:
    """Print the table; True when every target holds."""
    ok = True
    print(f"\n{'':32} {'images/s':^30}  {'peak memory MiB':^30}")
    print(
        f"{'run':32} {'bare':>9} {'vistra':>9} {'ratio':>10}  {'bare':>9} {'vistra':>9} {'ratio':>10}"
    )
    for name, bare, ours in rows:
        speed = ours.images_per_s / bare.images_per_s
        ok &= speed >= TARGET_SPEED
        if bare.peak_mib is None or ours.peak_mib is None:
            memory = f"{'n/a on CPU':>30}"
        else:
            ratio = ours.peak_mib / bare.peak_mib
            ok &= ratio <= TARGET_MEMORY
            memory = f"{bare.peak_mib:9.0f} {ours.peak_mib:9.0f} {ratio:9.3f}x"
        print(
            f"{name:32} {bare.images_per_s:9.1f} {ours.images_per_s:9.1f} {speed:9.3f}x  {memory}"
        )
    print(f"targets: images/s >= {TARGET_SPEED}x, peak memory <= {TARGET_MEMORY}x the bare loop's")
    _, bare, ours = rows[0]
    rtol = LOSS_RTOL["amp" if s.amp else "fp32"]
    same = abs(ours.first_loss() - bare.first_loss()) <= rtol * abs(bare.first_loss())
    print(
        f"first loss, data on the device: bare {bare.first_loss():.5f}, vistra "
        f"{ours.first_loss():.5f}: {'equal' if same else 'DIFFERENT'} (rtol {rtol})"
    )
    return ok and same


def settings(args: argparse.Namespace, device: torch.device) -> Settings:
    s = Settings(
        device, args.iters, args.warmup, args.batch_size, args.size, (512, 1024), 2,
        args.workers, args.images, 50, args.amp, args.channels_last, args.compile,
    )  # fmt: skip
    if args.tiny:  # the same code paths, a fraction of the CPU time
        s = replace(s, iters=2, warmup=1, batch_size=2, size=32, seg_size=(32, 64), images=4)
        s = replace(s, depth=18, workers=min(s.workers, 1))
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--images", type=int, default=512, help="JPEGs to generate")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="2 iterations each at 32 px")
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.iters:
        parser.error(f"--warmup must be in [1, --iters), got {args.warmup} and {args.iters}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r}: give cuda, cuda:N or cpu")
    if device.type not in ("cuda", "cpu"):
        parser.error(f"--device {args.device!r}: give cuda, cuda:N or cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        print(f"no CUDA device: nothing to measure (torch {torch.__version__}, {build})")
        return 0
    s = settings(args, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{name}, torch {torch.__version__}: batch {s.batch_size} at {s.size} px, "
        f"{s.iters} iterations ({s.warmup} warm-up), workers {s.workers}, amp {s.amp}, "
        f"channels_last {s.channels_last}, compile {s.compile}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as root:
        rows = measure(s, Path(root))
    return 0 if report(s, rows) else 1


if __name__ == "__main__":
    sys.exit(main())
