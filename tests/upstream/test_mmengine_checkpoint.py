"""vistra reads what a real MMEngine training run writes: ``load_from``, ``test`` and
``--resume`` on a genuine ``epoch_N.pth`` of MMEngine 0.10.7 (tools/upstream/oracle_mmengine_run.py),
with safe (``weights_only``) loading and without importing MMEngine."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import pytest
import torch
from e2e_support import read_jsonl, run_cli, run_dirs
from oracle_support import run_oracle_json

from vistra.checkpoint import load_checkpoint_file
from vistra.config import Config
from vistra.engine.loops import EpochBasedTrainLoop
from vistra.engine.runner import Runner

# the same model, data and schedule as the MMEngine run, as a vistra config
CONFIG = """
default_scope = 'mmpretrain'
model = {model!r}
data_preprocessor = {data_preprocessor!r}
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
def _loader(split, shuffle):
    return dict(batch_size={batch_size}, num_workers=0,
                dataset=dict(type='CustomDataset', data_root={data_root!r}, data_prefix=split,
                             pipeline=pipeline),
                sampler=dict(type='DefaultSampler', shuffle=shuffle))
train_dataloader = _loader('train', True)
val_dataloader = _loader('val', False)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer={optimizer!r})
param_scheduler = {param_scheduler!r}
train_cfg = dict(by_epoch=True, max_epochs={epochs}, val_interval=1)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(logger=dict(type='LoggerHook', interval=1, draw_curves=False),
                     checkpoint=dict(type='CheckpointHook', interval=1))
randomness = dict(seed=0)
"""


@pytest.fixture(scope="module")
def mmengine_run(tmp_path_factory):
    """A genuine MMEngine run (2 epochs of 2 iterations) and the equivalent vistra config."""
    out = tmp_path_factory.mktemp("mmengine_run")
    result = run_oracle_json("mmengine_run", out, timeout=300)
    cfg = result["config"]
    text = CONFIG.format(data_root=result["data_root"], **cfg)
    (out / "vistra_cfg.py").write_text(text)
    result["vistra_cfg"] = out / "vistra_cfg.py"
    result["ckpt"] = {c["epoch"]: Path(c["path"]) for c in result["checkpoints"]}
    return result


def _runner(cfg_path: Path, work_dir: Path, **top) -> Runner:
    cfg = Config.fromfile(str(cfg_path))
    cfg["work_dir"] = str(work_dir)
    for key, value in top.items():
        cfg[key] = value
    return Runner.from_config(cfg)


def _log(work_dir: Path) -> str:
    run = run_dirs(work_dir)[-1]
    return (run / f"{run.name}.log").read_text()


def test_real_mmengine_checkpoint_pickles_what_is_allow_listed(mmengine_run):
    """The globals a real MMEngine file pickles; each must be one vistra allow-lists."""
    found = set(mmengine_run["checkpoints"][0]["globals"])
    assert "mmengine.logging.history_buffer.HistoryBuffer" in found
    assert {"numpy.ndarray", "numpy.dtype"} <= found
    path = mmengine_run["ckpt"][1]
    with zipfile.ZipFile(path) as zf:  # a real torch zip file, as MMEngine wrote it
        assert any(n.endswith("data.pkl") for n in zf.namelist())
    with pytest.raises(Exception, match="HistoryBuffer"):  # torch alone refuses it
        torch.load(path, weights_only=True)
    ckpt = load_checkpoint_file(path)  # weights_only, with vistra's stand-ins
    assert sorted(ckpt) == ["message_hub", "meta", "optimizer", "param_schedulers", "state_dict"]
    assert ckpt["meta"]["mmengine_version"].startswith("0.10.7")  # + git hash in a checkout
    buffer = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert type(buffer).__module__ == "vistra.checkpoint.mmengine_compat"
    assert len(buffer._log_history) == 2


def test_load_from_mmengine_checkpoint_loads_every_weight(mmengine_run, tmp_path):
    runner = _runner(mmengine_run["vistra_cfg"], tmp_path)
    path = mmengine_run["ckpt"][2]
    report = runner.load_checkpoint(str(path), strict=True)
    weights = load_checkpoint_file(path)["state_dict"]
    assert not report.unset and not report.unexpected and not report.remapped
    assert sorted(report.loaded) == sorted(weights)
    model = runner.model.state_dict()
    assert all(torch.equal(model[k], v) for k, v in weights.items())
    log = _log(tmp_path)
    assert "load report" in log and f"| loaded         | {len(weights):>5} |" in log


def test_vistra_test_cli_runs_on_mmengine_checkpoint(mmengine_run, tmp_path):
    result = run_cli(
        "test", mmengine_run["vistra_cfg"], mmengine_run["ckpt"][2], "--work-dir", tmp_path,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    (run,) = run_dirs(tmp_path)
    metrics = json.loads((run / f"{run.name}.json").read_text())
    assert "accuracy/top1" in metrics
    assert "load report" in result.output and "missing        |     0" in result.output


def test_resume_restores_optimizer_schedulers_and_position(mmengine_run, tmp_path, monkeypatch):
    """In process: right after resuming, the optimizer holds the file's momentum buffers,
    the schedulers its counters, the loop its epoch/iter; the log says what is not restored."""
    path = mmengine_run["ckpt"][1]
    saved = load_checkpoint_file(path)
    seen = {}

    def stop_at_start(loop):  # the loop would train from here: record and stop
        runner = loop.runner
        seen.update(
            epoch=runner.epoch,
            iter=runner.iter,
            optimizer=copy.deepcopy(runner.optim_wrapper.optimizer.state_dict()),
            schedulers=[s.state_dict() for s in runner.param_schedulers],
        )
        return runner.model

    monkeypatch.setattr(EpochBasedTrainLoop, "run", stop_at_start)
    runner = _runner(mmengine_run["vistra_cfg"], tmp_path, resume=True, load_from=str(path))
    runner.train()
    assert (seen["epoch"], seen["iter"]) == (1, 2)
    state, file_state = seen["optimizer"]["state"], saved["optimizer"]["state"]
    assert len(state) == len(file_state) == len(list(runner.model.parameters()))
    for index, buffers in file_state.items():
        assert torch.equal(state[index]["momentum_buffer"], buffers["momentum_buffer"])
    assert [g["lr"] for g in seen["optimizer"]["param_groups"]] == [
        g["lr"] for g in saved["optimizer"]["param_groups"]
    ]
    for mine, theirs in zip(seen["schedulers"], saved["param_schedulers"], strict=True):
        for key in ("last_step", "_global_step", "base_values", "_last_value"):
            assert mine[key] == theirs[key], key
    lines = [line for line in _log(tmp_path).splitlines() if "MMEngine 0.10.7 checkpoint" in line]
    assert len(lines) == 1 and "2/2 param schedulers" in lines[0] and "not restored" in lines[0]


def test_vistra_train_resume_continues_the_mmengine_run(mmengine_run, tmp_path):
    """The real CLI resumes epoch_1.pth at epoch 2 and trains it with the lr MMEngine's own
    second epoch used (scheduler state carried over), writing a vistra epoch_2.pth."""
    result = run_cli(
        "train", mmengine_run["vistra_cfg"], "--work-dir", tmp_path,
        "--resume", mmengine_run["ckpt"][1], cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert "resumed from" in result.output and "epoch 1, iter 2" in result.output
    assert "not an exact continuation" in result.output
    (run,) = run_dirs(tmp_path)
    log = (run / f"{run.name}.log").read_text()
    assert "Epoch(train) [2][" in log and "Epoch(train) [1][" not in log
    ckpt = torch.load(tmp_path / "epoch_2.pth", weights_only=True)
    assert (ckpt["meta"]["epoch"], ckpt["meta"]["iter"]) == (2, 4)
    steps = [s for s in read_jsonl(run / "vis_data" / "scalars.json") if "lr" in s]
    theirs = load_checkpoint_file(mmengine_run["ckpt"][2])["message_hub"]["log_scalars"]
    mmengine_lr = [float(x) for x in theirs["train/lr"]._log_history]
    assert [s["lr"] for s in steps] == pytest.approx(mmengine_lr[2:4])


def test_pretrained_init_cfg_reads_mmengine_checkpoint(mmengine_run):
    from vistra.registry import MODELS

    path = mmengine_run["ckpt"][2]
    backbone_cfg = dict(mmengine_run["config"]["model"]["backbone"])
    backbone_cfg["init_cfg"] = dict(type="Pretrained", checkpoint=str(path), prefix="backbone.")
    backbone = MODELS.build(backbone_cfg)
    backbone.init_weights()
    weights = load_checkpoint_file(path)["state_dict"]
    own = backbone.state_dict()
    assert own.keys() == {k[len("backbone.") :] for k in weights if k.startswith("backbone.")}
    assert all(torch.equal(v, weights[f"backbone.{k}"]) for k, v in own.items())
