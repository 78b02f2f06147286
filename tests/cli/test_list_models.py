"""``vistra list-models``: reads an upstream wheel's model index (here a small wheel written
by the test, in MMPretrain's metafile format) through the real CLI."""

from __future__ import annotations

import json
import textwrap
import zipfile

from e2e_support import run_cli

INDEX = "Import:\n- configs/tiny/metafile.yml\n"
METAFILE = textwrap.dedent(
    """\
    Collections:
      - Name: Tiny
    Models:
      - Name: tiny-resnet_8xb32_in1k
        In Collection: Tiny
        Config: configs/tiny/tiny-resnet_8xb32_in1k.py
        Results:
        - Dataset: ImageNet-1k
          Task: Image Classification
          Metrics:
            Top 1 Accuracy: 71.5
        Weights: https://example.org/tiny-resnet.pth
      - Name: tiny-unknown_8xb32_in1k
        In Collection: Tiny
        Config: configs/tiny/tiny-unknown_8xb32_in1k.py
        Results:
          Task: Semantic Segmentation
          Dataset: ADE20K
          Metrics:
            mIoU: 40.2
    """
)
RESNET = "model = dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18), neck=dict(type='GlobalAveragePooling'), head=dict(type='LinearClsHead', num_classes=10, in_channels=512))\n"
UNKNOWN = "model = dict(type='ImageClassifier', backbone=dict(type='NoSuchNet'))\n"


def _wheel(folder):
    """A wheel as pip downloads one, holding mmpretrain/.mim/{model-index.yml, configs}."""
    path = folder / "mmpretrain-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("mmpretrain/.mim/model-index.yml", INDEX)
        whl.writestr("mmpretrain/.mim/configs/tiny/metafile.yml", METAFILE)
        whl.writestr("mmpretrain/.mim/configs/tiny/tiny-resnet_8xb32_in1k.py", RESNET)
    return path


def _unpacked(folder):
    """The same, installed: site-packages/mmpretrain/.mim/..."""
    mim = folder / "site" / "mmpretrain" / ".mim"
    (mim / "configs" / "tiny").mkdir(parents=True)
    (mim / "model-index.yml").write_text(INDEX)
    (mim / "configs" / "tiny" / "metafile.yml").write_text(METAFILE)
    (mim / "configs" / "tiny" / "tiny-resnet_8xb32_in1k.py").write_text(RESNET)
    (mim / "configs" / "tiny" / "tiny-unknown_8xb32_in1k.py").write_text(UNKNOWN)
    return folder / "site"


def test_lists_models_of_a_wheel_with_metric_and_checkpoint_url(tmp_path):
    result = run_cli("list-models", "--index", _wheel(tmp_path), "--package", "mmpretrain",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("tiny-resnet_8xb32_in1k  ImageNet-1k top-1 71.5  ")
    assert lines[0].endswith("https://example.org/tiny-resnet.pth")
    assert "mmpretrain-9.9.9-py3-none-any.whl!mmpretrain/.mim/configs/tiny/" in lines[0]
    assert lines[1].startswith("tiny-unknown_8xb32_in1k  ADE20K mIoU 40.2  ")
    assert lines[1].endswith("  -")  # no checkpoint in the metafile
    assert "2 model(s)" in result.stderr


def test_pattern_json_and_check_on_an_installed_package(tmp_path):
    site = _unpacked(tmp_path)
    result = run_cli("list-models", "TINY-RES*", "--index", site, "--package", "mmpretrain",
                     "--json", "--check", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["name"] == "tiny-resnet_8xb32_in1k" and row["builds"] == "yes"
    assert row["weights"] == "https://example.org/tiny-resnet.pth" and not row["shipped"]
    assert row["config"].endswith("site/mmpretrain/.mim/configs/tiny/tiny-resnet_8xb32_in1k.py")
    result = run_cli("list-models", "unknown", "--index", site, "--package", "mmpretrain",
                     "--check", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.output
    assert "builds: no: RegistryError: unknown model type 'NoSuchNet'" in result.stdout
    assert "vistra builds 0/1" in result.stderr


def test_bad_index_paths_are_one_error_line(tmp_path):
    result = run_cli("list-models", "--index", tmp_path, cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip().startswith("error: ") and "no model-index.yml there" in result.stderr
    )
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    result = run_cli("list-models", "--index", broken, cwd=tmp_path)
    assert result.returncode == 2 and "not a readable wheel" in result.stderr
