"""Time from launch to the end of the first training iteration: ``vistra train`` on the
quickstart config against a bare PyTorch script doing the same work, side by side.

Both run in fresh interpreters, alternating, several times each, after one untimed launch
of each (which writes the bytecode caches, as a user's first run does); each prints the
wall clock at the end of its first iteration and exits there. The bare script is what a user
would write for the same run: the quickstart's 64-px shapes samples (rendered on first
use, as ``ShapesDataset`` does), a random horizontal flip, batch 32 shuffled, the same
ResNet-18 (16 base channels), global pooling, a linear head, cross-entropy and AdamW.
vistra's run is the real command on ``configs/quickstart/cls_shapes.py`` (a config that
inherits it adds only a hook that exits after the first iteration): imports, config
parsing, pre-flight checks, work dir, logs, datasets, model and optimizer included.

Prints both medians and the difference; exits 1 when vistra takes more than the bare
script + 0.2 s (issue #20's target).

    python benchmarks/first_iteration.py [--repeats 5] [--config configs/quickstart/cls_shapes.py]
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

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 0.2
MARK = "FIRST_ITERATION_END"

HOOK = f"""
import os, sys, time
from vistra.engine.hooks import Hook
from vistra.registry import HOOKS


@HOOKS.register_module()
class ExitAfterFirstIteration(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        print("{MARK}", time.time(), flush=True)
        os._exit(0)
"""

CONFIG = """
_base_ = [{base!r}]
custom_imports = dict(imports=['first_iteration_hook'], allow_failed_imports=False)
custom_hooks = [dict(type='ExitAfterFirstIteration')]
"""

BARE = f"""
import os, sys, time
import torch
import torch.nn.functional as F
from vistra.data.datasets.shapes import render_split
from vistra.models.backbones.resnet import ResNet


class Shapes(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n, self.cache = n, {{}}

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i not in self.cache:
            self.cache[i] = render_split("train", i, 0, 64, 6)[:2]
        img, label = self.cache[i]
        x = torch.from_numpy(img[..., ::-1].transpose(2, 0, 1).copy())  # BGR -> RGB, CHW
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, label


torch.manual_seed(0)
loader = torch.utils.data.DataLoader(Shapes(6000), batch_size=32, shuffle=True)
backbone = ResNet(depth=18, stem_channels=16, base_channels=16, out_indices=(3,))
head = torch.nn.Linear(128, 6)
params = list(backbone.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=0.003, weight_decay=0.05)
mean, std = torch.tensor([127.5] * 3).view(1, 3, 1, 1), torch.tensor([64.0] * 3).view(1, 3, 1, 1)
for x, y in loader:
    feats = backbone((x.float() - mean) / std)[-1]
    loss = F.cross_entropy(head(feats.mean((2, 3))), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    print("{MARK}", time.time(), flush=True)
    os._exit(0)
"""


def first_iteration_s(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    """Seconds from launching ``cmd`` to the end of its first iteration."""
    start = time.time()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    marks = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if not marks:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode} without reaching a first iteration:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return float(marks[0].split()[1]) - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", default=str(REPO / "configs/quickstart/cls_shapes.py"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "first_iteration_hook.py").write_text(HOOK)
        config = Path(tmp, "quickstart_first_iteration.py")
        config.write_text(CONFIG.format(base=str(Path(args.config).resolve())))
        bare = Path(tmp, "bare_first_iteration.py")
        bare.write_text(BARE)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, str(REPO)]))
        # as on a user's machine: bytecode cached after the first run (a sandbox may set
        # PYTHONDONTWRITEBYTECODE, which makes every launch compile every module again)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        vistra_cmd = [sys.executable, "-m", "vistra", "train", str(config)]
        vistra_cmd += ["--work-dir", str(Path(tmp, "work_dir"))]
        commands = {"bare": [sys.executable, str(bare)], "vistra": vistra_cmd}
        for cmd in commands.values():  # untimed: writes the bytecode, warms the file cache
            first_iteration_s(cmd, env, tmp)
        runs: dict[str, list[float]] = {"bare": [], "vistra": []}
        for repeat in range(args.repeats):
            order = ("bare", "vistra") if repeat % 2 == 0 else ("vistra", "bare")
            for name in order:
                runs[name].append(first_iteration_s(commands[name], env, tmp))
            print(
                f"repeat {repeat}: bare {runs['bare'][-1]:.2f} s, vistra {runs['vistra'][-1]:.2f} s",
                flush=True,
            )
    bare_s, vistra_s = (statistics.median(runs[k]) for k in ("bare", "vistra"))
    extra = statistics.median(v - b for b, v in zip(runs["bare"], runs["vistra"]))
    print(
        f"\nlaunch to end of first iteration, medians: bare {bare_s:.2f} s, vistra {vistra_s:.2f} s"
    )
    ok = extra <= TARGET_S
    print(f"vistra - bare = {extra:+.2f} s (target <= +{TARGET_S} s): {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
