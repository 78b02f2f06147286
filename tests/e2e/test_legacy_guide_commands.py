"""The MMSegmentation 0.x guide's training commands, verbatim, on a 0.x config (PSPNet,
Cityscapes schema) pointed at tiny generated data:

    python tools/train.py CONFIG --work-dir D --resume-from CKPT
    python tools/train.py CONFIG --load-from CKPT
    python tools/train.py CONFIG --options model.backbone.with_cp=True
    python tools/train.py CONFIG --deterministic / --no-validate / --work_dir D
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from e2e_support import REPO, assert_same_weights, load_weights, run_dirs, tool_env
from legacy_support import write_tiny_legacy

from vistra.config import Config

pytestmark = pytest.mark.slow

PSPNET = "mmseg/pspnet/pspnet_r50-d8_512x1024_40k_cityscapes.py"


def train(*args: str, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), *map(str, args)],
        cwd=cwd,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def scalars(work_dir) -> list[dict]:
    run = run_dirs(work_dir)[-1]
    return [json.loads(line) for line in (run / "vis_data" / "scalars.json").open()]


def dumped_config(work_dir, config) -> Config:
    return Config.fromfile(work_dir / config.name)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """``python tools/train.py CONFIG --work-dir D``: two iterations, a checkpoint each."""
    tmp = tmp_path_factory.mktemp("legacy_guide")
    config = write_tiny_legacy(PSPNET, tmp)
    work = tmp / "baseline"
    proc = train(config, "--work-dir", work, cwd=tmp)
    assert "0.x (MMCV runner) config" in proc.stderr
    assert (work / "iter_1.pth").is_file() and (work / "iter_2.pth").is_file()
    return tmp, config, work


def test_resume_from_continues_exactly(baseline):
    tmp, config, work = baseline
    resumed = tmp / "resumed"
    proc = train(config, "--work-dir", resumed, "--resume-from", work / "iter_1.pth", cwd=tmp)
    assert "--resume-from" in proc.stderr  # the one-line deprecation notice
    steps = [s for s in scalars(resumed) if "loss" in s]
    assert [s["iter"] for s in steps] == [2]  # iteration 1 is not replayed
    assert_same_weights(load_weights(resumed / "iter_2.pth"), load_weights(work / "iter_2.pth"))


def test_load_from_no_validate_and_work_dir_underscore(baseline):
    tmp, config, work = baseline
    loaded = tmp / "loaded"
    train(
        config, "--work_dir", loaded, "--load-from", work / "iter_2.pth", "--no-validate", cwd=tmp
    )
    records = scalars(loaded)
    assert [s["iter"] for s in records if "loss" in s] == [1, 2]  # a fresh run from loaded weights
    assert not [s for s in records if "mIoU" in s]  # --no-validate
    log = (run_dirs(loaded)[-1] / f"{run_dirs(loaded)[-1].name}.log").read_text()
    assert "iter_2.pth" in log


def test_options_and_deterministic(baseline):
    tmp, config, _ = baseline
    work = tmp / "options"
    proc = train(
        config,
        "--work-dir",
        work,
        "--options",
        "model.backbone.with_cp=True",
        "--deterministic",
        cwd=tmp,
    )
    assert "--options" in proc.stderr
    dumped = dumped_config(work, config)
    assert dumped.model.backbone.with_cp is True
    assert dumped.randomness.deterministic is True
    assert [s for s in scalars(work) if "mIoU" in s]  # validated at iteration 2


def test_test_with_eval_and_aug_test(baseline):
    """``python tools/test.py CONFIG CKPT --eval mIoU mDice --aug-test --out results.pkl``."""
    tmp, config, work = baseline
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "test.py"),
            str(config),
            str(work / "iter_2.pth"),
            "--work-dir",
            str(tmp / "tested"),
            "--eval",
            "mIoU",
            "mDice",
            "--aug-test",
            "--out",
            str(tmp / "results.pkl"),
        ],
        cwd=tmp,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dirs(tmp / "tested")[-1]
    metrics = json.loads((run / f"{run.name}.json").read_text())
    assert {"mIoU", "mDice", "aAcc"} <= set(metrics)
    assert (tmp / "results.pkl").is_file()
    log = (run / f"{run.name}.log").read_text()
    assert "TestTimeAug" in log or "SegTTAModel" in log


def test_a_config_mixing_the_schemas_stops_before_training(tmp_path):
    config = tmp_path / "mixed.py"
    config.write_text(
        f"_base_ = '{REPO / 'tests/data/legacy_configs' / PSPNET}'\n"
        "param_scheduler = [dict(type='PolyLR', power=0.9, by_epoch=False)]\n"
    )
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), str(config), "--work-dir", "w"],
        cwd=tmp_path,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "'lr_config' (0.x)" in line and "'param_scheduler' (1.x)" in line
    assert not (tmp_path / "w").exists()  # nothing was started or written
