"""vistra ships configs under configs/ named as in the MMSegmentation wheel; each must say
what the wheel's file of the same name says: both load in vistra (the merging itself is
held to MMEngine's by test_config_conformance.py) and the merged dicts are equal, so that a
user's command line means the same with either file. The default suite and the full run
take all of them (loading a config is milliseconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from oracle_support import REPO, config_tree

from vistra.config import Config

SHIPPED = sorted(p for p in (REPO / "configs").rglob("*.py") if "_base_" not in p.parts)


def _twins() -> list[tuple[Path, Path]]:
    tree = config_tree("mmseg")
    pairs = [(p, tree / p.relative_to(REPO / "configs")) for p in SHIPPED]
    return [(ours, theirs) for ours, theirs in pairs if theirs.is_file()]


def test_shipped_segmentation_configs_equal_the_wheel_files_of_their_names():
    pairs = _twins()
    assert len(pairs) >= 10, "too few shipped configs have an MMSegmentation twin"
    differ = {}
    for ours, theirs in pairs:
        mine, upstream = (
            Config.fromfile(str(ours)).to_dict(),
            Config.fromfile(str(theirs)).to_dict(),
        )
        keys = sorted(k for k in set(mine) | set(upstream) if mine.get(k) != upstream.get(k))
        if keys:
            differ[str(ours.relative_to(REPO))] = keys
    if differ:
        pytest.fail(f"{len(differ)}/{len(pairs)} shipped configs differ in {differ}")
