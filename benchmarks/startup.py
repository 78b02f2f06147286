"""Startup cost of ``vistra print-config`` next to ``import torch``, measured side by side.

Builds a four-level ``_base_`` chain (Python, YAML and JSON files) in a temporary
directory, then runs ``python -m vistra print-config CHAIN`` and ``python -c "import torch"``
in fresh interpreters, alternating, several times each, and prints the medians and their
ratio. Exits 1 when print-config takes more than half as long as importing torch: the
config path must never pay for torch.

    python benchmarks/startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 0.5  # print-config may take at most this fraction of `import torch`

CHAIN = {
    "_base_/models/resnet.py": """
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=512, topk=(1, 5)))
""",
    "_base_/datasets/data.yaml": """
train_dataloader:
  batch_size: 32
  num_workers: 2
  dataset: {type: CustomDataset, data_root: data/x}
""",
    "_base_/schedules/sgd.json": """
{"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}},
 "train_cfg": {"by_epoch": true, "max_epochs": 100}}
""",
    "level1.py": """
_base_ = ['_base_/models/resnet.py', '_base_/datasets/data.yaml', '_base_/schedules/sgd.json']
default_scope = 'mmpretrain'
""",
    "level2.py": "_base_ = 'level1.py'\nmodel = dict(backbone=dict(depth=50))\n",
    "level3.py": """
_base_ = 'level2.py'
optim_wrapper = dict(_delete_=True, optimizer=dict(type='AdamW', lr=1e-3))
""",
    "level4.py": """
_base_ = ['level3.py']
model = dict(head=dict(num_classes=_base_.model.head.num_classes // 10))
work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
""",
}


def build_chain(directory: Path) -> Path:
    """Write the chain under ``directory``; returns the path of its leaf config."""
    for name, text in CHAIN.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip("\n"), encoding="utf-8")
    return directory / "level4.py"


def run_once(command: list[str], env: dict[str, str]) -> float:
    """Seconds one run takes; a failing command stops the benchmark with its stderr."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return elapsed


def print_config_command(leaf: Path, env: dict[str, str]) -> list[str]:
    """``-m vistra print-config``; ``-m vistra.cli.print_config`` if the dispatcher is missing."""
    command = [sys.executable, "-m", "vistra", "print-config", str(leaf)]
    try:
        run_once(command, env)
    except RuntimeError as e:
        print(f"note: `python -m vistra print-config` failed, timing the module directly\n{e}")
        command = [sys.executable, "-m", "vistra.cli.print_config", str(leaf)]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs of each command (median)")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        leaf = build_chain(Path(tmp))
        commands = {
            "vistra print-config": print_config_command(leaf, env),
            "import torch": [sys.executable, "-c", "import torch"],
        }
        for command in commands.values():  # warm the file cache once
            run_once(command, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):  # alternate so that both see the same machine load
            for name, command in commands.items():
                times[name].append(run_once(command, env))

    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["vistra print-config"] / medians["import torch"]
    print(f"four-level _base_ chain, {args.repeats} runs each, median wall time")
    print(f"{'command':<22}{'median (s)':>12}{'min (s)':>10}{'max (s)':>10}")
    for name, values in times.items():
        print(f"{name:<22}{medians[name]:>12.3f}{min(values):>10.3f}{max(values):>10.3f}")
    print(f"ratio print-config / import torch: {ratio:.2f} (limit {LIMIT:.2f})")
    if ratio > LIMIT:
        print("FAIL: print-config is too slow next to importing torch")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
