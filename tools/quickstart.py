"""Quickstart: train and test a classifier and a segmenter on built-in synthetic shapes.

Runs the real CLI (``python -m vistra train`` / ``test``) as a user would, then prints the
test metrics and where the log, the training curves and the checkpoints are.

    python tools/quickstart.py [--only cls|seg|mae] [--work-root work_dirs/quickstart]

``--only mae`` runs the self-supervised demonstration instead: MAE pre-training of a tiny
ViT, a reconstruction PNG, then a linear probe of the pre-trained backbone against the
same probe on a randomly initialised one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (config, the metric the summary reports, extra test flags)
DEMOS = {
    "cls": ("configs/quickstart/cls_shapes.py", "accuracy/top1", []),
    "seg": (
        "configs/quickstart/seg_shapes.py",
        "mIoU",
        ["--show-dir", "overlays", "--interval", "50"],
    ),
}


def run(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "vistra", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def latest_run_dir(work_dir: Path) -> Path:
    runs = sorted(p for p in work_dir.iterdir() if p.is_dir() and p.name[:8].isdigit())
    return runs[-1]


def demo(name: str, work_root: Path) -> dict:
    config, metric, test_flags = DEMOS[name]
    work_dir = work_root / Path(config).stem
    start = time.perf_counter()
    run(["train", config, "--work-dir", str(work_dir)])
    train_s = time.perf_counter() - start
    train_run = latest_run_dir(work_dir)
    checkpoint = work_dir / (work_dir / "last_checkpoint").read_text().strip()
    run(["test", config, str(checkpoint), "--work-dir", str(work_dir), *test_flags])
    test_run = latest_run_dir(work_dir)
    metrics = json.loads((test_run / f"{test_run.name}.json").read_text())
    return {
        "name": name,
        "metric": metric,
        "value": metrics[metric],
        "seconds": time.perf_counter() - start,
        "train_seconds": train_s,
        "log": train_run / f"{train_run.name}.log",
        "curves": train_run / "vis_data" / "curves.png",
        "checkpoints": sorted(p.name for p in work_dir.glob("*.pth")),
        "work_dir": work_dir,
        "overlays": test_run / "overlays" if test_flags else None,
    }


def demo_mae(work_root: Path) -> dict:
    """Pre-train, draw a reconstruction, probe the pre-trained and a random backbone."""
    start = time.perf_counter()
    pre_dir = work_root / "mae_shapes"
    run(["train", "configs/quickstart/mae_shapes.py", "--work-dir", str(pre_dir)])
    checkpoint = pre_dir / (pre_dir / "last_checkpoint").read_text().strip()
    pretrain_s = time.perf_counter() - start

    sample = pre_dir / "sample.png"
    _write_shapes_sample(sample)
    reconstruction = pre_dir / "reconstruction.png"
    cmd = [
        sys.executable,
        "tools/analysis_tools/visualize_reconstruction.py",
        "configs/quickstart/mae_shapes.py",
        str(checkpoint),
        str(sample),
        "--out-file",
        str(reconstruction),
        "--norm-pix",  # the config trains with norm_pix=True
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)

    accuracies = {}
    for name, option in (
        ("pre-trained", f"model.backbone.init_cfg.checkpoint={checkpoint}"),
        ("random init", "model.backbone.init_cfg=None"),
    ):
        work_dir = work_root / f"mae_shapes_linear_{name.split()[0].replace('-', '_')}"
        config = "configs/quickstart/mae_shapes_linear.py"
        run(["train", config, "--work-dir", str(work_dir), "--cfg-options", option])
        probe = work_dir / (work_dir / "last_checkpoint").read_text().strip()
        run(["test", config, str(probe), "--work-dir", str(work_dir)])
        test_run = latest_run_dir(work_dir)
        accuracies[name] = json.loads((test_run / f"{test_run.name}.json").read_text())[
            "accuracy/top1"
        ]
    return {
        "accuracies": accuracies,
        "seconds": time.perf_counter() - start,
        "pretrain_seconds": pretrain_s,
        "reconstruction": reconstruction,
        "work_root": work_root,
    }


def _write_shapes_sample(path: Path) -> None:
    """One held-out shapes image as a PNG, for the reconstruction tool."""
    from PIL import Image

    from vistra.data.datasets import ShapesDataset

    dataset = ShapesDataset(num_samples=1, num_classes=6, img_size=64, split="test")
    image = dataset[0]["img"]  # HWC uint8, BGR as loaded images are
    Image.fromarray(image[..., ::-1].copy()).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=[*sorted(DEMOS), "mae"],
        action="append",
        help="run only these demos (mae: the self-supervised one, not run by default)",
    )
    parser.add_argument(
        "--work-root", default="work_dirs/quickstart", help="where the work dirs go"
    )
    args = parser.parse_args(argv)
    work_root = (REPO / args.work_root).resolve()
    names = args.only or list(DEMOS)
    results = [demo(name, work_root) for name in names if name != "mae"]
    mae = demo_mae(work_root) if "mae" in names else None
    print("\nquickstart summary")
    for r in results:
        print(
            f"  {r['name']}: {r['metric']} = {r['value']:.2f} on the held-out split ({r['seconds']:.0f} s, training {r['train_seconds']:.0f} s)"
        )
        print(f"    log:         {r['log']}")
        print(f"    curves:      {r['curves']}")
        print(f"    checkpoints: {r['work_dir']}/{{{', '.join(r['checkpoints'])}}}")
        if r["overlays"] is not None:
            print(
                f"    overlays:    {r['overlays']} ({len(list(r['overlays'].glob('*.png')))} PNGs)"
            )
    if mae is not None:
        acc = mae["accuracies"]
        print(
            f"  mae: linear probe top-1 on the held-out split: {acc['pre-trained']:.2f} with the "
            f"MAE-pre-trained backbone vs {acc['random init']:.2f} with a random one "
            f"({mae['seconds']:.0f} s, pre-training {mae['pretrain_seconds']:.0f} s)"
        )
        print(f"    reconstruction: {mae['reconstruction']}")
        print(f"    work dirs:      {mae['work_root']}/mae_shapes*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
