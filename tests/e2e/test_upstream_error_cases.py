"""Mistakes in a user's upstream config, through the real CLI: one line that names the key
and the fix, a non-zero exit, no traceback."""

from __future__ import annotations

import pytest
from e2e_support import run_cli
from fake_data import write_cifar10
from oracle_support import config_tree

pytestmark = pytest.mark.slow

# (arguments after the config, the pieces the one error line must hold)
CASES = {
    "backbone-arg-typo": (
        ["--cfg-options", "model.backbone.depht=18"],
        ["ResNet_CIFAR got an unexpected argument 'depht'", "'model.backbone.depht'",
         "did you mean 'depth'?"],
    ),
    "backbone-type-typo": (
        ["--cfg-options", "model.backbone.type=ResNet_CIFARR"],
        ["'ResNet_CIFARR'", "'model.backbone'", "did you mean", "ResNet_CIFAR"],
    ),
    "dataset-missing": (  # the config as shipped, without CIFAR-10 under data/
        [],
        ["train_dataloader.dataset.data_root, val_dataloader.dataset.data_root: "
         "folder not found: 'data/cifar10' (CIFAR10)",
         "point data_root at the folder"],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def cifar_config():
    path = config_tree("mmpretrain") / "resnet" / "resnet18_8xb16_cifar10.py"
    if not path.is_file():
        pytest.skip(f"{path} is not in the installed MMPretrain")
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_error_is_one_line_naming_key_and_fix(tmp_path, cifar_config, case):
    args, pieces = CASES[case]
    if case != "dataset-missing":  # the data is there: the mistake is the only problem
        write_cifar10(tmp_path / "data" / "cifar10")
    result = run_cli("train", cifar_config, "--work-dir", tmp_path / "w", *args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for piece in pieces:
        assert piece in errors[0], errors[0]
    assert errors[0] == lines[-1]  # the last word, not buried in the log


# A user's own config that leans on the upstream tree: (config text, pieces of the error line)
WRITTEN = {
    "scoped-base-nowhere": (
        "_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'\n",
        ["base config 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'", "not found: tried",
         "configs/mmdet/faster_rcnn/", "VISTRA_CONFIG_ROOTS=mmdet="],
    ),
    "custom-import-missing": (
        "_base_ = '{cifar}'\n"
        "custom_imports = dict(imports=['mmpretrain.models', 'my_missing_plugin'])\n",
        ["custom_imports: cannot import 'my_missing_plugin'", "PYTHONPATH",
         "allow_failed_imports=True"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(WRITTEN))
def test_written_config_error_is_one_line(tmp_path, cifar_config, case):
    text, pieces = WRITTEN[case]
    config = tmp_path / f"{case}.py"
    config.write_text(text.format(cifar=cifar_config))
    result = run_cli("train", config, "--work-dir", tmp_path / "w", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr[-2000:]
    for piece in pieces:
        assert piece in errors[0], errors[0]
    assert not (tmp_path / "w").exists()  # stopped before anything was written
