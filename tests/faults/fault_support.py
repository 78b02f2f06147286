"""Shared by the fault tests (issue #15): how many trials to run, the configs, running the
real CLI with tests/faults importable, checking a work dir after a fault, and the counts
that the terminal summary prints (tests/faults/conftest.py).

By default each test runs a fixed small sample; ``VISTRA_FAULTS_FULL=1``
(``scripts/test.sh --faults``) runs the full counts of the issue's acceptance wording.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from e2e_support import REPO, TINY_CLS

FULL = os.environ.get("VISTRA_FAULTS_FULL", "") not in ("", "0")
HERE = Path(__file__).resolve().parent
SUMMARY: list[str] = []

#: what every checkpoint of a training run holds (DESIGN §4)
CHECKPOINT_KEYS = {
    "meta",
    "state_dict",
    "optimizer",
    "param_schedulers",
    "message_hub",
    "loop_state",
}
TRACEBACK = "Traceback (most recent call last)"


def trials(default: int, full: int) -> int:
    return full if FULL else default


def report(line: str) -> None:
    """A line for the "fault injection" section of the terminal summary (and ``-s``)."""
    SUMMARY.append(line)
    print(line)


def child_env(extra: dict | None = None) -> dict:
    """Environment of a training process: CPU, one thread (two cores are shared), the
    fault hooks and the e2e hooks importable through ``custom_imports``."""
    paths = [str(HERE), str(REPO / "tests" / "helpers")]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    env = {"PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}
    env.update(extra or {})
    return env


def write_config(path: Path, *, max_epochs: int = 3, num_workers: int = 0, extra: str = "") -> Path:
    """TINY_CLS (24 samples, batch 4: 6 iterations an epoch) with the fault hooks imported
    and drop path in the backbone, so that training draws from the main process's torch
    RNG and a resume must restore it (augmentation is seeded per sample)."""
    text = TINY_CLS.format(num_classes=3, max_epochs=max_epochs, num_workers=num_workers)
    text += "\ncustom_imports = dict(imports=['recording_hooks', 'fault_hooks'])\n"
    text += "model['backbone']['drop_path_rate'] = 0.2\n" + extra
    path.write_text(text)
    return path


def train_command(cfg: Path, work_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "vistra", "train", str(cfg), "--work-dir", str(work_dir), *args]


def start_train(
    cfg: Path, work_dir: Path, *args: str, log: Path, env: dict | None = None
) -> subprocess.Popen:
    """``vistra train`` in the background, its output going to ``log`` (not a pipe: a
    process killed with SIGKILL must not leave the test blocked on a full pipe)."""
    full_env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", **child_env(env))
    with open(log, "w") as out:
        return subprocess.Popen(
            train_command(cfg, work_dir, *args),
            cwd=work_dir.parent,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a (nested) checkpoint entry, by a dotted path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return {}
    out: dict[str, torch.Tensor] = {}
    for k, v in items:
        out.update(tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differing(a: dict, b: dict) -> list[str]:
    """Names of the tensors that are not bit-identical (or missing on one side)."""
    ta, tb = tensors(a), tensors(b)
    diff = sorted(set(ta) ^ set(tb))
    diff += [
        k for k in ta if k in tb and not (ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]))
    ]
    return diff


def same_training_state(a: Path, b: Path) -> list[str]:
    """What differs between two checkpoints' weights and optimizer states (empty: identical)."""
    ca, cb = load(a), load(b)
    return differing(
        {"state_dict": ca["state_dict"], "optimizer": ca.get("optimizer", {})},
        {"state_dict": cb["state_dict"], "optimizer": cb.get("optimizer", {})},
    )


def pointer_target(work_dir: Path) -> Path:
    text = (work_dir / "last_checkpoint").read_text().strip()
    return Path(text) if Path(text).is_absolute() else work_dir / text


def checkpoint_problems(work_dir: Path, reference_keys: set[str]) -> list[str]:
    """What is wrong with the checkpoints a fault left in ``work_dir``: ``last_checkpoint``
    must name a complete checkpoint, and every ``iter_N``/``epoch_N`` file must load."""
    problems = []
    pointer = work_dir / "last_checkpoint"
    if not pointer.is_file():
        return ["no last_checkpoint"]
    target = pointer_target(work_dir)
    for path in sorted(work_dir.glob("*.pth")):
        try:
            ckpt = load(path)
        except Exception as exc:  # a truncated file: the atomic write failed
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            problems.append(f"{path.name} does not load: {reason}")
            continue
        if path == target:
            missing = CHECKPOINT_KEYS - set(ckpt)
            if missing:
                problems.append(f"{path.name} lacks {sorted(missing)}")
            elif set(ckpt["state_dict"]) != reference_keys:
                problems.append(f"{path.name} has other weights than the model")
            m = re.match(r"(iter|epoch)_(\d+)\.pth$", path.name)
            if m and ckpt["meta"].get(m.group(1)) != int(m.group(2)):
                problems.append(f"{path.name} says {m.group(1)} {ckpt['meta'].get(m.group(1))}")
    if not target.is_file():
        problems.append(f"last_checkpoint names {target.name}, which does not exist")
    return problems


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))
