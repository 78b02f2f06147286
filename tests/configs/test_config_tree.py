"""Every config under configs/ (except _base_ files) builds its model, trains two
iterations and runs one validation pass on tiny generated data of the right format."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import seg_zoo
from tiny_runs import train_tiny

from vistra.config import Config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.py") if "_base_" not in p.parts)


def _alias_target(path: Path) -> Path | None:
    """The config that an alias file (nothing but ``_base_ = './other.py'``, e.g. an
    MMSegmentation 0.x name kept for a 1.x config) stands for; None for other files."""
    code = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    match = (
        re.fullmatch(r"_base_ = '((?:\.\./|\./)[^']+\.py)'", code[0]) if len(code) == 1 else None
    )
    return (path.parent / match.group(1)).resolve() if match else None


ALIASES = [p for p in CONFIGS if _alias_target(p) is not None]
TRAINED = [p for p in CONFIGS if p not in ALIASES]
# The segmentation zoo's folders (issue #16) ship MMSegmentation's own config of each family
# (tests/upstream/test_shipped_seg_configs.py holds them equal to the wheel's files, and
# tests/upstream/test_seg_zoo_train.py trains a sample of those): the default suite trains
# the folders that came before the zoo; VISTRA_ZOO_FULL=1 (scripts/test.sh --zoo) every one.
BEFORE_ZOO = {"deeplabv3", "deeplabv3plus", "fcn", "point_rend", "pspnet", "unet"}
ZOO_FOLDERS = {rel.split("/")[0] for rel in seg_zoo.FAMILIES.values()} - BEFORE_ZOO


def _in_seg_zoo(path: Path) -> bool:
    """A segmentation config in a zoo folder (``configs/mae`` also holds MMPretrain's MAE
    pre-training config, which is not one)."""
    folder = path.relative_to(REPO / "configs").parts[0]
    return folder in ZOO_FOLDERS and Config.fromfile(path).get("default_scope") == "mmseg"


# Configs whose model, data and pipeline another trained config already covers (they differ
# in schedule or depth only): the default suite leaves them to --zoo, to stay inside CI's time.
SAME_AS_ANOTHER = {
    "deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py",  # r50 40k, deeper
    "deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py",  # r50 40k, longer
    "point_rend/pointrend_r50_4xb2-80k_cityscapes-512x1024.py",  # = the feetarch PointRend
}
if os.environ.get("VISTRA_ZOO_FULL", "") in ("", "0"):
    TRAINED = [
        p
        for p in TRAINED
        if not _in_seg_zoo(p) and str(p.relative_to(REPO / "configs")) not in SAME_AS_ANOTHER
    ]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO / "configs")) for p in paths]


@pytest.mark.parametrize("path", ALIASES, ids=_ids(ALIASES))
def test_alias_config_is_its_target(path):
    """An alias trains exactly what its target (trained below) trains."""
    target = _alias_target(path)
    assert target in TRAINED, f"{path.name} points at {target.name}, which is not a trained config"
    assert Config.fromfile(path).to_dict() == Config.fromfile(target).to_dict()


@pytest.mark.slow
@pytest.mark.parametrize("path", TRAINED, ids=_ids(TRAINED))
def test_config_trains_two_iterations_and_validates(path, tmp_path):
    train_tiny(Config.fromfile(path), tmp_path)
