"""``vistra list-models`` over the real MMPretrain and MMSegmentation wheels' model indexes:
every model of their metafiles is listed once with the checkpoint URL the metafile gives,
and the configs vistra ships are marked."""

from __future__ import annotations

import json

import yaml
from e2e_support import run_cli
from oracle_support import config_tree, oracle_dir, report


def _metafile_weights(package: str) -> list[tuple[str, str | None]]:
    mim = config_tree(package).parent
    index = yaml.safe_load((mim / "model-index.yml").read_text())
    weights = []  # a list: MMSegmentation's metafiles name a few models twice
    for metafile in index["Import"]:
        for model in yaml.safe_load((mim / metafile).read_text()).get("Models") or []:
            weights.append((model["Name"], model.get("Weights")))
    return weights


def test_lists_every_model_of_the_wheels_with_its_checkpoint_url(tmp_path):
    for package in ("mmpretrain", "mmseg"):
        result = run_cli("list-models", "--index", oracle_dir() / package, "--package", package,
                         "--json", cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.output
        rows = json.loads(result.stdout)
        expected = _metafile_weights(package)
        assert [(r["name"], r["weights"]) for r in rows] == expected
        shipped = [r for r in rows if r["shipped"]]
        report(f"list-models {package}: {len(rows)} models, {sum(bool(r['weights']) for r in rows)} "
               f"with a checkpoint URL, {len(shipped)} with a config vistra ships")  # fmt: skip
        assert all("/configs/" in r["config"] for r in shipped)
    assert any(r["name"] == "pspnet_r50-d8_4xb2-40k_cityscapes-512x1024" for r in shipped)
