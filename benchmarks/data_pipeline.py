"""Data pipeline throughput: vistra against torchvision and MMPretrain / MMSegmentation.

Generates photo-like JPEGs in a temporary folder (ImageNet sizes 500x375 .. 640x480, and
Cityscapes 2048x1024 with PNG label maps of 19 classes + 255), then in ONE run:

1. decoders, one thread, images/s on the ImageNet JPEGs: Pillow, torchvision.io.decode_jpeg,
   simplejpeg, PyTurboJPEG (when it and a system libturbojpeg exist) and cv2 (the oracle's
   OpenCV, which MMCV's ``LoadImageFromFile`` uses), each with its max and mean |diff| to
   cv2.imdecode(..., IMREAD_COLOR) BGR, and the one vistra's ``imfrombytes`` uses;
2. the ImageNet training pipeline (configs/_base_/datasets/imagenet_bs32.py: decode,
   RandomResizedCrop 224, horizontal flip, pack) and the Cityscapes one (configs/_base_/
   datasets/cityscapes.py: load, annotations, RandomResize, RandomCrop with cat_max_ratio,
   flip, PhotoMetricDistortion, pack), each for vistra (its registry, from the config's
   dicts), torchvision v2 doing the same work, and the upstream oracle (MMPretrain 1.2.0 /
   MMSegmentation 1.2.2 from the same dicts). One worker process per pipeline and
   implementation, single-threaded (torch.set_num_threads(1), cv2.setNumThreads(0)); the
   workers take turns pass after pass (interleaved repeats) and the median pass is reported.

Exit 1 when the ImageNet pipeline misses a target: vistra >= 1.0x torchvision and >= 1.3x
MMPretrain (the Cityscapes ratios are printed, not enforced). Without the oracle
(tools/upstream/install.sh not run, or ``--no-upstream``) the MMPretrain column says so and
only the torchvision target counts.

    python benchmarks/data_pipeline.py [--images 128] [--seg-images 8] [--repeats 11]
                                       [--no-upstream] [--tiny] [--profile]

``--tiny`` (the smoke test's size) uses a few small images and one pass. ``--profile`` adds
vistra's milliseconds per image for each step of both pipelines (steps that ``Compose``
fuses, like RandomResize + RandomCrop, are timed together).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
IMAGENET_SIZES = ((500, 375), (640, 480), (500, 333), (375, 500), (500, 400))
TARGET_TV, TARGET_UPSTREAM = 1.0, 1.3
NOT_INSTALLED = "not installed, run tools/upstream/install.sh"
UPSTREAM_NAME = {"imagenet": "MMPretrain", "cityscapes": "MMSeg"}


# --------------------------------------------------------------------------- data
def photo(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """RGB content a JPEG codec works on like a photo: smooth colour fields, shapes, grain."""
    from PIL import Image, ImageDraw

    small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x1, y1], fill=colour)
    grain = rng.integers(-12, 13, (h, w, 3))
    return np.clip(np.asarray(img).astype(np.int16) + grain, 0, 255).astype(np.uint8)


def write_data(root: Path, n_cls: int, n_seg: int, seg_size: tuple[int, int]) -> dict:
    """The generated files, as the sample dicts each pipeline starts from."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "imagenet").mkdir()
    (root / "cityscapes").mkdir()
    cls = []
    for i in range(n_cls):
        path = root / "imagenet" / f"{i:05d}.JPEG"
        Image.fromarray(photo(*IMAGENET_SIZES[i % len(IMAGENET_SIZES)], rng)).save(path, quality=90)
        cls.append({"img_path": str(path), "gt_label": i % 1000})
    seg = []
    w, h = seg_size
    for i in range(n_seg):
        img_path = root / "cityscapes" / f"{i:05d}_leftImg8bit.jpg"
        Image.fromarray(photo(w, h, rng)).save(img_path, quality=90)
        labels = rng.integers(0, 19, (h // 32, w // 32), dtype=np.uint8)
        labels[rng.random(labels.shape) < 0.1] = 255
        ann_path = root / "cityscapes" / f"{i:05d}_gtFine_labelTrainIds.png"
        Image.fromarray(labels).resize((w, h), Image.Resampling.NEAREST).save(ann_path)
        seg.append(
            {
                "img_path": str(img_path),
                "seg_map_path": str(ann_path),
                "seg_fields": [],
                "reduce_zero_label": False,
                "label_map": None,
            }
        )
    return {"imagenet": cls, "cityscapes": seg}


def pipeline_dicts() -> dict[str, list[dict]]:
    from vistra.config import Config

    base = REPO / "configs" / "_base_" / "datasets"
    out = {}
    for name, file in (("imagenet", "imagenet_bs32.py"), ("cityscapes", "cityscapes.py")):
        cfg = Config.fromfile(base / file)
        out[name] = [dict(step) for step in cfg.train_pipeline]
    return out


def oracle_dir() -> Path | None:
    """The upstream install tools/upstream/install.sh prints (installing it when missing and
    the package index is reachable), or None when there is none."""
    script = REPO / "tools" / "upstream" / "install.sh"
    try:
        res = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return None
    folder = Path(res.stdout.strip() or ".")
    return folder if res.returncode == 0 and (folder / ".complete").exists() else None


def fit_pipelines(pipelines: dict[str, list[dict]], seg_size: tuple[int, int]) -> None:
    """Scale the Cityscapes resize/crop to smaller generated images (``--tiny``), keeping
    the config's proportions (scale = the image size, crop = half of it)."""
    if seg_size == (2048, 1024):
        return
    for step in pipelines["cityscapes"]:
        if step["type"] == "RandomResize":
            step["scale"] = seg_size
        elif step["type"] == "RandomCrop":
            step["crop_size"] = (seg_size[1] // 2, seg_size[0] // 2)


# --------------------------------------------------------------------------- decoders
def decoders() -> dict:
    """name -> bytes -> (H, W, 3) uint8 BGR, for the decoders importable here."""
    import io

    import torch
    from PIL import Image
    from torchvision.io import decode_jpeg

    out = {
        "pillow": lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))[..., ::-1],
        "torchvision.io.decode_jpeg": lambda b: (
            decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8))
            .permute(1, 2, 0)
            .numpy()[..., ::-1]
        ),
    }
    try:
        import simplejpeg

        out["simplejpeg"] = lambda b: simplejpeg.decode_jpeg(b, colorspace="BGR")
    except ImportError:
        pass
    try:
        from turbojpeg import TurboJPEG

        jpeg = TurboJPEG()
        out["PyTurboJPEG"] = jpeg.decode  # BGR by default
    except (ImportError, RuntimeError, OSError):
        pass
    return out


def time_decoder(fn, blobs: list[bytes], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for blob in blobs:
            fn(blob)
        rates.append(len(blobs) / (time.perf_counter() - start))
    return statistics.median(rates)


def cv2_worker(spec: dict) -> None:
    """Oracle side: decode with cv2 as MMCV does, save the arrays, print images/s."""
    import cv2

    cv2.setNumThreads(0)
    blobs = [Path(s["img_path"]).read_bytes() for s in spec["samples"]["imagenet"]]

    def fn(b: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)

    np.savez(spec["cv2_ref"], *[fn(b) for b in blobs])
    print(json.dumps({"ips": time_decoder(fn, blobs, spec["repeats"])}))


def decoder_report(spec: dict, oracle: Path | None) -> list[str]:
    from vistra.data import image_io

    blobs = [Path(s["img_path"]).read_bytes() for s in spec["samples"]["imagenet"]]
    ref, lines = None, ["decoders, 1 thread, ImageNet JPEGs (|diff| to cv2.imdecode BGR):"]
    if oracle is not None:
        res = json.loads(run_worker(spec, "cv2", "decode", oracle).splitlines()[-1])
        loaded = np.load(spec["cv2_ref"])
        ref = [loaded[f"arr_{i}"] for i in range(len(blobs))]
        lines.append(f"  {'cv2 (MMCV, oracle)':30s} {res['ips']:8.0f} images/s  (reference)")
    found = decoders()
    found["vistra imfrombytes"] = lambda b: image_io.imfrombytes(b)
    for name, fn in found.items():
        ips = time_decoder(fn, blobs, spec["repeats"])
        if ref is None:
            diff = f"no cv2 reference: the oracle is {spec['no_oracle']}"
        else:
            d = [np.abs(fn(b).astype(np.int16) - r) for b, r in zip(blobs, ref, strict=True)]
            diff = f"max |diff| {max(int(x.max()) for x in d)}, mean {np.mean([x.mean() for x in d]):.4f}"
        lines.append(f"  {name:30s} {ips:8.0f} images/s  {diff}")
    if "PyTurboJPEG" not in found:
        lines.append(f"  {'PyTurboJPEG':30s}   not available (package or libturbojpeg missing)")
    lines.append(f"  vistra decodes plain JPEGs with: {image_io.jpeg_decoder_name()}")
    return lines


# --------------------------------------------------------------------------- pipelines
def vistra_pipeline(dicts: list[dict]):
    import vistra.data.transforms  # noqa: F401  (registers the transforms)
    from vistra.data.transforms.base import Compose
    from vistra.registry import TRANSFORMS

    return Compose([TRANSFORMS.build(dict(d)) for d in dicts])


def upstream_pipeline(name: str, dicts: list[dict]):
    sys.path.insert(0, str(REPO / "tools" / "upstream"))
    import oracle_env  # noqa: F401  (the oracle's environment adaptations)
    from mmcv.transforms import Compose

    if name == "imagenet":
        from mmpretrain.registry import TRANSFORMS
        from mmpretrain.utils import register_all_modules
    else:
        from mmseg.registry import TRANSFORMS
        from mmseg.utils import register_all_modules
    register_all_modules()
    return Compose([TRANSFORMS.build(dict(d)) for d in dicts])


def torchvision_imagenet(dicts: list[dict]):
    """decode_jpeg (faster than PIL here, see the decoder table) + v2 crop/flip, bilinear
    without antialiasing as cv2's INTER_LINEAR (what MMPretrain and vistra compute)."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import v2

    size = next(d["scale"] for d in dicts if d["type"] == "RandomResizedCrop")
    aug = v2.Compose([v2.RandomResizedCrop(size, antialias=False), v2.RandomHorizontalFlip(0.5)])

    def run(sample: dict) -> dict:
        img = aug(decode_jpeg(read_file(sample["img_path"])))
        return {"inputs": img, "gt_label": sample["gt_label"]}

    return run


def torchvision_cityscapes(dicts: list[dict]):
    """v2 with tv_tensors.Mask: resize of the short edge by 0.5..2, a crop retried (up to
    10 times) while one class covers >= cat_max_ratio of it as MMSeg's RandomCrop, flip,
    brightness/contrast/saturation/hue each with p=0.5 as PhotoMetricDistortion, pack."""
    import torch
    from torchvision import tv_tensors
    from torchvision.io import decode_jpeg, decode_png, read_file
    from torchvision.transforms import v2

    resize = next(d for d in dicts if d["type"] == "RandomResize")
    crop = next(d for d in dicts if d["type"] == "RandomCrop")
    short = min(resize["scale"])
    lo, hi = (int(short * r) for r in resize["ratio_range"])
    ch, cw = crop["crop_size"]
    geometric = v2.Compose(
        [v2.RandomResize(lo, hi + 1, antialias=False), v2.RandomHorizontalFlip()]
    )
    jitter = [
        v2.ColorJitter(brightness=32 / 255),
        v2.ColorJitter(contrast=0.5),
        v2.ColorJitter(saturation=0.5),
        v2.ColorJitter(hue=18 / 360),
    ]
    photometric = v2.Compose([v2.RandomApply([t], p=0.5) for t in jitter])

    def cat_crop(img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = mask.shape[-2:]
        for _ in range(10):
            top = int(torch.randint(0, max(h - ch, 0) + 1, ()))
            left = int(torch.randint(0, max(w - cw, 0) + 1, ()))
            part = mask[top : top + ch, left : left + cw]
            counts = torch.bincount(part.flatten(), minlength=256)[:255]
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < crop["cat_max_ratio"]:
                break
        return img[:, top : top + ch, left : left + cw], part

    def run(sample: dict) -> dict:
        img = tv_tensors.Image(decode_jpeg(read_file(sample["img_path"])))
        mask = tv_tensors.Mask(decode_png(read_file(sample["seg_map_path"]))[0])
        img, mask = geometric(img, mask)
        img, mask = cat_crop(img, mask)
        img = photometric(img)
        return {"inputs": img.as_subclass(torch.Tensor), "gt_sem_seg": mask.long()[None]}

    return run


def pipeline_worker(impl: str, name: str, spec: dict) -> None:
    """Build the pipeline, then time one pass over the samples per line read on stdin."""
    import torch

    torch.set_num_threads(1)
    np.random.seed(0)
    torch.manual_seed(0)
    # JSON gave lists where the config wrote tuples (MMSeg's RandomCrop insists on them)
    dicts = [{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
             for d in spec["pipelines"][name]]  # fmt: skip
    if impl == "vistra":
        run = vistra_pipeline(dicts)
    elif impl == "upstream":
        import cv2

        cv2.setNumThreads(0)
        run = upstream_pipeline(name, dicts)
    else:
        run = (torchvision_imagenet if name == "imagenet" else torchvision_cityscapes)(dicts)
    samples = spec["samples"][name]

    def one(sample: dict) -> None:
        out = run({k: (list(v) if isinstance(v, list) else v) for k, v in sample.items()})
        if out is None:
            raise RuntimeError(f"{impl} {name} pipeline dropped {sample['img_path']}")

    one(samples[0])  # imports and caches
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        for sample in samples:
            one(sample)
        print(json.dumps({"ips": len(samples) / (time.perf_counter() - start)}), flush=True)


def profile_lines(spec: dict) -> list[str]:
    """vistra's ms per image for each pipeline step, single-threaded, in this process."""
    import torch

    torch.set_num_threads(1)
    lines = []
    for name, dicts in spec["pipelines"].items():
        pipeline = vistra_pipeline([{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in d.items()} for d in dicts])  # fmt: skip
        pipeline(dict(spec["samples"][name][0]))  # imports and lookup tables
        steps, totals = pipeline.transforms, {}
        np.random.seed(0)
        for sample in spec["samples"][name] * spec["repeats"]:
            results, i = dict(sample), 0
            while i < len(steps):  # as Compose runs them, fused pairs included
                start = time.perf_counter()
                nxt = steps[i + 1] if i + 1 < len(steps) else None
                out = NotImplemented if nxt is None else steps[i].transform_with_next(nxt, results)
                label = type(steps[i]).__name__
                if out is NotImplemented:
                    out, i = steps[i](results), i + 1
                else:
                    label, i = f"{label} + {type(nxt).__name__}", i + 2
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - start
                results = out
        n = len(spec["samples"][name]) * spec["repeats"]
        lines.append(f"vistra {name} pipeline, ms per image by step (--profile):")
        lines += [f"  {label:36s} {t / n * 1000:8.2f}" for label, t in totals.items()]
    return lines


# --------------------------------------------------------------------------- driver
def worker_command(spec: dict, impl: str, name: str) -> list[str]:
    return [sys.executable, __file__, "--worker", impl, "--pipeline", name, "--spec", spec["file"]]


def worker_env(impl: str, oracle: Path | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if impl in ("upstream", "cv2"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(oracle), env.get("PYTHONPATH")]))
    return env


def run_worker(spec: dict, impl: str, name: str, oracle: Path | None) -> str:
    cmd = worker_command(spec, impl, name)
    res = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(impl, oracle))
    if res.returncode != 0:
        raise RuntimeError(f"{impl} worker failed:\n{res.stderr[-3000:]}")
    return res.stdout


@dataclass
class Worker:
    impl: str
    name: str
    proc: subprocess.Popen
    err: Path  # stderr goes to a file: a pipe nobody reads could fill and block the worker
    rates: list[float]

    @classmethod
    def start(cls, spec: dict, impl: str, name: str, oracle: Path | None) -> Worker:
        err = Path(spec["file"]).with_name(f"{impl}-{name}.stderr")
        with err.open("w") as stderr:
            proc = subprocess.Popen(
                worker_command(spec, impl, name),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=worker_env(impl, oracle),
            )
        return cls(impl, name, proc, err, [])

    def read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=60)
            tail = self.err.read_text()[-3000:]
            raise RuntimeError(f"{self.impl} {self.name} worker died:\n{tail}")
        return line.strip()

    def one_pass(self) -> None:
        self.proc.stdin.write("pass\n")
        self.proc.stdin.flush()
        self.rates.append(json.loads(self.read())["ips"])

    def close(self) -> None:
        """End of stdin ends the worker's loop; kill it if it does not go."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def measure(spec: dict, impls: list[str], oracle: Path | None) -> dict[tuple[str, str], float]:
    """Median images/s per (pipeline, implementation); the workers take turns each pass."""
    workers = [Worker.start(spec, i, n, oracle) for n in ("imagenet", "cityscapes") for i in impls]
    try:
        for w in workers:  # started together, warmed up one after the other
            if w.read() != "ready":
                raise RuntimeError(f"{w.impl} {w.name} worker did not start")
        for _ in range(spec["repeats"]):
            for w in workers:
                w.one_pass()
    finally:
        for w in workers:
            w.close()
    return {(w.name, w.impl): statistics.median(w.rates) for w in workers}


def report(rates: dict, spec: dict, has_upstream: bool) -> tuple[list[str], bool]:
    lines, ok = [], True
    titles = {"imagenet": "ImageNet train", "cityscapes": "Cityscapes train"}
    for name in ("imagenet", "cityscapes"):
        n = len(spec["samples"][name])
        upstream = UPSTREAM_NAME[name]
        lines.append(f"{titles[name]} pipeline ({n} images, images/s per core, median):")
        for impl, label in (("vistra", "vistra"), ("torchvision", "torchvision v2"),
                            ("upstream", upstream)):  # fmt: skip
            if (name, impl) in rates:
                lines.append(f"  {label:16s} {rates[name, impl]:8.2f}")
        v = rates[name, "vistra"]
        r_tv = v / rates[name, "torchvision"]
        enforced = name == "imagenet"
        lines.append(f"  ratio vistra / torchvision = {r_tv:.2f}x (target >= {TARGET_TV})")
        ok &= not enforced or r_tv >= TARGET_TV
        if has_upstream:
            r_up = v / rates[name, "upstream"]
            lines.append(f"  ratio vistra / {upstream} = {r_up:.2f}x (target >= {TARGET_UPSTREAM})")
            ok &= not enforced or r_up >= TARGET_UPSTREAM
        else:
            lines.append(f"  {upstream}: {spec['no_oracle']}")
    return lines, ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="ImageNet JPEGs")
    parser.add_argument("--seg-images", type=int, default=8, help="Cityscapes images")
    parser.add_argument("--repeats", type=int, default=11, help="interleaved passes")
    parser.add_argument("--no-upstream", action="store_true", help="leave the oracle out")
    parser.add_argument("--tiny", action="store_true", help="smoke-test size")
    parser.add_argument("--profile", action="store_true", help="vistra's time per step")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag in ("images", "seg_images", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(Path(args.spec).read_text())
        if args.worker == "cv2":
            cv2_worker(spec)
        else:
            pipeline_worker(args.worker, args.pipeline, spec)
        return 0
    if args.tiny:
        args.images, args.seg_images, args.repeats = 4, 2, 1
    seg_size = (256, 128) if args.tiny else (2048, 1024)
    oracle = None if args.no_upstream else oracle_dir()
    with tempfile.TemporaryDirectory() as tmp:
        pipelines = pipeline_dicts()
        fit_pipelines(pipelines, seg_size)
        spec = {
            "samples": write_data(Path(tmp), args.images, args.seg_images, seg_size),
            "pipelines": pipelines,
            "repeats": args.repeats,
            "cv2_ref": str(Path(tmp, "cv2_ref.npz")),
            "file": str(Path(tmp, "spec.json")),
            "no_oracle": "left out (--no-upstream)" if args.no_upstream else NOT_INSTALLED,
        }
        Path(spec["file"]).write_text(json.dumps(spec))
        for line in decoder_report(spec, oracle):
            print(line, flush=True)
        impls = ["vistra", "torchvision"] + (["upstream"] if oracle else [])
        rates = measure(spec, impls, oracle)
        profile = profile_lines(spec) if args.profile else []
    lines, ok = report(rates, spec, oracle is not None)
    print("\n".join(profile + lines))
    if oracle is None and not args.no_upstream:
        print(f"MMPretrain: {NOT_INSTALLED}")
    print("targets met" if ok else "a target is missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
