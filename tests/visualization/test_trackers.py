"""WandbVisBackend and MLflowVisBackend: a real tiny ``vistra train`` logs to both, offline
(wandb's offline run file, mlflow's file store), and what they recorded is read back and
compared with the run's own scalars.json; a tracker whose package is missing stops the
run in the pre-flight check, before anything is written."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from e2e_support import read_jsonl, run_cli, run_dirs, write_cfg

from vistra.visualization import MLflowVisBackend, WandbVisBackend

BACKENDS = """
visualizer = dict(type='Visualizer', vis_backends=[
    dict(type='LocalVisBackend'),
    dict(type='WandbVisBackend', init_kwargs=dict(project='vistra-tests', mode='offline'),
         define_metric_cfg={{'accuracy/top1': 'max'}}),
    dict(type='MLflowVisBackend', exp_name='vistra-tests', run_name='tiny',
         tracking_uri='{uri}', tags=dict(purpose='test')),
])
"""


def _offline_env(tmp_path: Path) -> dict:
    """wandb offline, its settings and caches inside the test folder, not in $HOME."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        **{f"WANDB_{d}_DIR": str(tmp_path / "wandb-home") for d in ("CONFIG", "CACHE", "DATA")},
    }


def wandb_records(path: Path) -> list:
    """The records of a wandb ``.wandb`` run file: a ``:W&B`` header, then LevelDB-style
    log records (crc, length, type: full/first/middle/last) in 32 KiB blocks, each a
    protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", "not a wandb run file"
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)  # wandb writes one or the other


@pytest.mark.slow
def test_train_logs_scalars_and_config_to_wandb_and_mlflow(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    cfg = write_cfg(tmp_path, max_epochs=1, extra=BACKENDS.format(uri=uri))
    work = tmp_path / "work"
    res = run_cli("train", cfg, "--work-dir", work, cwd=tmp_path, env=_offline_env(tmp_path))
    assert res.returncode == 0, res.output[-3000:]
    run = run_dirs(work)[-1]
    local = read_jsonl(run / "vis_data" / "scalars.json")
    train = [r for r in local if "loss" in r]
    assert len(train) == 3  # 6 iterations, logged every 2

    # wandb: one history row per logged dict, the same numbers; the config as run config
    (run_file,) = (run / "vis_data" / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    history = [
        {_key(item): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    logged = [h for h in history if "loss" in h]
    assert [h["iter"] for h in logged] == [r["iter"] for r in train]
    for got, want in zip(logged, train, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-6)
    assert any("accuracy/top1" in h for h in history)  # the validation metric
    config = {
        _key(u): json.loads(u.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for u in r.config.update
    }
    assert config["model"]["backbone"]["type"] == "ResNet_CIFAR"
    assert config["work_dir"] == str(work)

    # mlflow: metrics per step, params from the flattened config, config.py and the logs
    (run_dir,) = [p for p in (tmp_path / "mlruns").glob("*/*") if (p / "metrics").is_dir()]
    loss = [line.split() for line in (run_dir / "metrics" / "loss").read_text().splitlines()]
    assert [int(step) for _, _, step in loss] == [r["step"] for r in train]
    assert [float(v) for _, v, _ in loss] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    lr = [float(line.split()[1]) for line in (run_dir / "metrics" / "lr").read_text().splitlines()]
    assert lr == pytest.approx([r["lr"] for r in train], rel=1e-6)
    assert (run_dir / "metrics" / "accuracy" / "top1").is_file()
    assert (run_dir / "params" / "model.backbone.type").read_text() == "ResNet_CIFAR"
    assert (run_dir / "params" / "optim_wrapper.optimizer.lr").read_text() == "0.05"
    assert (run_dir / "tags" / "purpose").read_text() == "test"
    assert (run_dir / "tags" / "mlflow.runName").read_text() == "tiny"
    artifacts = run_dir / "artifacts"
    assert "type='ResNet_CIFAR'" in (artifacts / "config.py").read_text()
    assert (artifacts / run.name / f"{run.name}.log").is_file()  # the text log, uploaded
    assert "status: 3" in (run_dir / "meta.yaml").read_text()  # FINISHED: the run was ended


@pytest.mark.slow
def test_a_tracker_that_is_not_installed_stops_the_run_before_it_starts(tmp_path):
    """A real ``vistra train`` in a child process where neither package can be imported."""
    cfg = write_cfg(tmp_path, extra=BACKENDS.format(uri=(tmp_path / "mlruns").as_uri()))
    hide = (
        "import sys; sys.modules['wandb'] = sys.modules['mlflow'] = None; "
        "from vistra.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
    )
    import subprocess

    from e2e_support import REPO

    work = tmp_path / "work"
    done = subprocess.run(
        [sys.executable, "-c", hide, "train", str(cfg), "--work-dir", str(work)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO / "tests" / "helpers")},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2, errors
    assert errors[0].startswith("error: visualizer.vis_backends[1]: WandbVisBackend needs")
    assert "pip install wandb" in errors[0]
    assert errors[1].startswith("error: visualizer.vis_backends[2]: MLflowVisBackend needs")
    assert "pip install mlflow" in errors[1]
    assert not work.exists()  # nothing trained, nothing written


def test_constructor_checks_and_lazy_start(tmp_path):
    with pytest.raises(TypeError, match="define_metric_cfg must be"):
        WandbVisBackend(str(tmp_path), define_metric_cfg="loss")
    backend = MLflowVisBackend(str(tmp_path), artifact_suffix=".log")
    assert backend._artifact_suffix == (".log",)
    with pytest.raises(ValueError, match="step"):
        backend.add_scalars({"loss": 1.0, "step": 3}, step=3)
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
    flat = backend._flatten({"a": {"b": 1}, "hooks": [{"type": "X"}, 2], "mean": [1, 2]})
    assert flat == {"a.b": "1", "hooks.0.type": "X", "hooks.1": "2", "mean": "[1, 2]"}
    assert WandbVisBackend.missing_requirement() is None  # installed for the tests
