"""``vistra migrate-config`` and ``vistra print-config`` on 0.x configs, and the one-line
errors for configs that mix the schemas or name an unknown policy (all torch-free)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vistra.cli import migrate_config, print_config
from vistra.config import Config

REPO = Path(__file__).resolve().parents[2]
PSPNET = REPO / "tests/data/legacy_configs/mmseg/pspnet/pspnet_r50-d8_512x1024_40k_cityscapes.py"
ONE_X = REPO / "configs/pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "old.py"
    path.write_text(f"_base_ = '{PSPNET}'\n{text}")
    return path


def test_migrate_writes_a_commented_1x_file(tmp_path, capsys):
    out = tmp_path / "new.py"
    assert migrate_config.main([str(PSPNET), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    header = text[: text.index("\n\n")]
    assert "lr_config" in header and "param_scheduler" in header  # one line per change
    cfg = Config.fromfile(out)
    assert cfg.param_scheduler == [
        dict(type="PolyLR", eta_min=1e-4, power=0.9, begin=0, end=40000, by_epoch=False)
    ]
    assert list(cfg)[-1] != "default_scope"  # 1.x key order, helper variables first


def test_migrate_never_overwrites_without_force(tmp_path, capsys):
    out = tmp_path / "new.py"
    out.write_text("# mine\n")
    assert migrate_config.main([str(PSPNET), str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "# mine\n"
    assert migrate_config.main([str(PSPNET), str(out), "--force"]) == 0
    assert out.read_text().startswith("# Migrated")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([str(ONE_X), "new.py"], "already a 1.x config"),
        (["missing.py", "new.py"], "not found: missing.py"),
        ([str(PSPNET), "new.yaml"], "name it *.py"),
    ],
)
def test_migrate_errors(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert migrate_config.main(args) == 2
    assert message in capsys.readouterr().err


def test_print_config_shows_the_translation(capsys):
    assert print_config.main([str(PSPNET), "--cfg-options", "data.samples_per_gpu=3"]) == 0
    captured = capsys.readouterr()
    assert "is a 0.x (MMCV runner) config" in captured.err
    assert "train_dataloader = dict(" in captured.out and "lr_config" not in captured.out
    assert "batch_size=3" in captured.out  # a 0.x option, applied before the translation


def test_mixing_schemas_is_one_error_naming_both_keys(tmp_path, capsys):
    path = _write(tmp_path, "param_scheduler = [dict(type='PolyLR', power=0.9)]\n")
    assert print_config.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "'lr_config' (0.x)" in err and "'param_scheduler' (1.x)" in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_policy_lists_the_supported_ones(tmp_path, capsys):
    path = _write(tmp_path, "lr_config = dict(policy='polynomial')\n")
    assert print_config.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "lr_config.policy" in err and "'polynomial'" in err
    for name in ("poly", "step", "CosineAnnealing", "OneCycle"):
        assert name in err
