"""``vistra check --mode all`` passes on every config under configs/ once its data is where
the config says (tiny data in the real on-disk format), and names what is missing when not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from e2e_support import run_cli
from fake_data import WRITERS

from vistra.cli import check
from vistra.config import Config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.py") if "_base_" not in p.parts)


def _datasets(dataset: dict):
    if dataset.get("type") == "ConcatDataset":
        for part in dataset["datasets"]:
            yield from _datasets(part)
    else:
        yield dataset


def _write_data_where_the_config_says(path: Path, cwd: Path) -> None:
    cfg = Config.fromfile(path)
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(key)
        for dataset in _datasets(loader.dataset) if loader else ():
            writer, root = WRITERS.get(dataset.type), dataset.get("data_root")
            if writer is not None and root and not (cwd / root).exists():
                writer(cwd / root)


@pytest.mark.parametrize(
    "path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS]
)
def test_check_passes_on_every_shipped_config(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _write_data_where_the_config_says(path, tmp_path)
    code = check.main([str(path), "--mode", "all", "--work-dir", str(tmp_path / "w")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.startswith(f"ok: {path}")
    assert not (tmp_path / "w").exists()  # a check writes nothing


@pytest.mark.slow
def test_check_without_the_data_names_every_missing_root_once(tmp_path):
    config = REPO / "configs" / "pspnet" / "pspnet_r50-d8_4xb4-80k_ade20k-512x512.py"
    result = run_cli("check", config, "--mode", "all", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: train_dataloader.dataset.data_root, val_dataloader.dataset.data_root, "
        "test_dataloader.dataset.data_root: folder not found: 'data/ade/ADEChallengeData2016' "
        "(ADE20KDataset); point data_root at the folder that holds the data"
    ], result.stderr
    assert not os.listdir(tmp_path)  # nothing written, not even the work dir
