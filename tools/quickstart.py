"""Quickstart: train and test a classifier and a segmenter on built-in synthetic shapes.

Runs the real CLI (``python -m vistra train`` / ``test``) as a user would, then prints the
test metrics and where the log, the training curves and the checkpoints are.

    python tools/quickstart.py [--only cls] [--work-root work_dirs/quickstart]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=sorted(DEMOS), action="append", help="run only these demos"
    )
    parser.add_argument(
        "--work-root", default="work_dirs/quickstart", help="where the work dirs go"
    )
    args = parser.parse_args(argv)
    work_root = (REPO / args.work_root).resolve()
    results = [demo(name, work_root) for name in (args.only or list(DEMOS))]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
