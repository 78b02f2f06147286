"""End-to-end testing (``vistra test``) and bad-input errors through the real CLI."""

from __future__ import annotations

import json
import pickle

import pytest
import yaml
from e2e_support import TINY_CLS, run_cli, run_dirs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained classifier shared by the tests of this module."""
    root = tmp_path_factory.mktemp("trained")
    cfg = root / "tiny_cls.py"
    cfg.write_text(TINY_CLS.format(num_classes=3, max_epochs=1, num_workers=0))
    result = run_cli("train", cfg, "--work-dir", root / "work", cwd=root)
    assert result.returncode == 0, result.output
    return cfg, root / "work" / "epoch_1.pth"


def test_test_writes_metrics_json(tmp_path, trained):
    cfg, ckpt = trained
    result = run_cli("test", cfg, ckpt, "--work-dir", tmp_path / "t", cwd=tmp_path)
    assert result.returncode == 0, result.output
    (run,) = run_dirs(tmp_path / "t")
    metrics = json.loads((run / f"{run.name}.json").read_text())
    assert 0.0 <= metrics["accuracy/top1"] <= 100.0
    assert "Epoch(test) [3/3]" in (run / f"{run.name}.log").read_text()


@pytest.mark.parametrize("suffix", [".pkl", ".json", ".yaml"])
@pytest.mark.parametrize("item", [None, "pred", "metrics"])
def test_out_and_out_item(tmp_path, trained, suffix, item):
    cfg, ckpt = trained
    out = tmp_path / f"result{suffix}"
    args = ["test", cfg, ckpt, "--work-dir", tmp_path / "t", "--out", out]
    if item:
        args += ["--out-item", item]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.output
    loaded = {
        ".pkl": lambda p: pickle.loads(p.read_bytes()),
        ".json": lambda p: json.loads(p.read_text()),
        ".yaml": lambda p: yaml.safe_load(p.read_text()),
    }[suffix](out)
    if item == "metrics":
        assert set(loaded) == {"accuracy/top1"}
    else:
        assert len(loaded) == 10  # one record per val sample
        record = loaded[0]
        assert {"pred_label", "pred_score", "gt_label", "sample_idx"} <= set(record)
        assert len(record["pred_score"]) == 3 and isinstance(record["pred_label"], int)


def test_show_dir_writes_annotated_images_every_interval(tmp_path, trained):
    cfg, ckpt = trained
    result = run_cli(
        "test",
        cfg,
        ckpt,
        "--work-dir",
        tmp_path / "t",
        "--show-dir",
        tmp_path / "vis",
        "--interval",
        "3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.output
    images = sorted((tmp_path / "vis").glob("*.png"))
    assert len(images) == 4  # samples 0, 3, 6, 9 of 10


def test_bad_out_extension_is_one_clear_line(tmp_path, trained):
    cfg, ckpt = trained
    result = run_cli("test", cfg, ckpt, "--out", tmp_path / "x.txt", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unsupported extension '.txt'" in result.stderr and ".pkl" in result.stderr


def test_missing_checkpoint_is_one_clear_line(tmp_path, trained):
    cfg, _ = trained
    result = run_cli("test", cfg, tmp_path / "nope.pth", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: checkpoint file not found")
    assert "nope.pth" in result.stderr


def test_checkpoint_leaving_weights_unset_is_refused(tmp_path, trained):
    cfg, ckpt = trained
    other = tmp_path / "four.py"
    other.write_text(cfg.read_text().replace("num_classes=3", "num_classes=4"))
    result = run_cli("test", other, ckpt, "--work-dir", tmp_path / "t", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        "leaves 2 model weights unset" in result.stderr
        and "test_strict_load=False" in result.stderr
    )
    allowed = run_cli(
        "test",
        other,
        ckpt,
        "--work-dir",
        tmp_path / "t",
        "--cfg-options",
        "test_strict_load=False",
        cwd=tmp_path,
    )
    assert allowed.returncode == 0, allowed.output


def test_unknown_type_is_one_clear_line(tmp_path, trained):
    cfg, _ = trained
    result = run_cli(
        "train",
        cfg,
        "--work-dir",
        tmp_path / "w",
        "--cfg-options",
        "model.backbone.type=ResNet_CIFARR",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert (
        "unknown model type 'ResNet_CIFARR'" in line
        and "model.backbone" in line
        and "ResNet_CIFAR" in line
    )


def test_missing_data_directory_is_one_clear_line(tmp_path, trained):
    cfg, _ = trained
    bad = tmp_path / "disk.py"
    bad.write_text(
        cfg.read_text()
        + "\ntrain_dataloader['dataset'] = dict(type='CustomDataset', data_root='no/such/dir', pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])\n"
    )
    result = run_cli("train", bad, "--work-dir", tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 2
    assert "no/such/dir" in result.stderr.strip().splitlines()[-1]


def test_corrupt_image_is_one_clear_line(tmp_path, trained):
    cfg, _ = trained
    root = tmp_path / "imgs" / "cat"
    root.mkdir(parents=True)
    (root / "broken.png").write_bytes(b"not a png at all")
    bad = tmp_path / "corrupt.py"
    bad.write_text(
        cfg.read_text()
        + f"\ntrain_dataloader['dataset'] = dict(type='CustomDataset', data_root={str(tmp_path / 'imgs')!r}, pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])\n"
    )
    result = run_cli("train", bad, "--work-dir", tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 2
    assert "broken.png" in result.stderr.strip().splitlines()[-1]
