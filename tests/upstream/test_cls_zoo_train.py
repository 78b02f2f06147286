"""Every family of the classification zoo trains and evaluates from MMPretrain's own config
file (the wheel's, unchanged on disk): two iterations with one validation pass, then a test
pass over one batch, on tiny generated data on CPU, at the family's reduced input size
(tests/helpers/cls_zoo.py; tests/helpers/tiny_runs.py does the rest of the shrinking).

The default suite takes a light sample of the families (``LIGHT``); VISTRA_ZOO_FULL=1
(``scripts/test.sh --zoo``) takes every family, and VISTRA_CLS_ONLY=name,... the ones named.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import cls_zoo
import pytest
from oracle_support import config_tree
from tiny_runs import dataloaders, dicts_in, shrink, train_tiny

from vistra.config import Config
from vistra.engine.runner import Runner

ZOO_FULL = os.environ.get("VISTRA_ZOO_FULL", "") not in ("", "0")
# A few seconds each on two cores: one of each kind of network.
LIGHT = ("resnet50", "repvgg-a0", "efficientnet-b0", "swin-tiny")
FAMILIES = cls_zoo.selected(ZOO_FULL)
if not ZOO_FULL and not os.environ.get("VISTRA_CLS_ONLY"):
    FAMILIES = {name: cls_zoo.FAMILIES[name] for name in LIGHT}
FAMILIES = {name: family for name, family in FAMILIES.items() if family.trains}
# the pipeline steps that fix the image size, and the argument that does
SIZE_STEPS = {
    "RandomResizedCrop": "scale",
    "ResizeEdge": "scale",
    "CenterCrop": "crop_size",
    "Resize": "scale",
    "RandomCrop": "crop_size",
}


def shrink_images(cfg: Config, size: tuple[int, int]) -> None:
    """Every size-fixing pipeline step at ``size`` (square families: its height)."""
    for loader in dataloaders(cfg):  # a retriever's gallery and prototype loaders too
        for step in dicts_in(loader.dataset.get("pipeline") or []):
            arg = SIZE_STEPS.get(step.get("type"))
            if arg is not None and step.get(arg) is not None:
                step[arg] = size[0] if step["type"] in ("RandomResizedCrop", "ResizeEdge") else size
                step.pop("padding", None) if step["type"] == "RandomCrop" else None


def _config(name: str, tmp_path: Path) -> Config:
    cfg = Config.fromfile(str(config_tree("mmpretrain") / FAMILIES[name].config))
    if FAMILIES[name].train_options:
        cfg.merge_from_dict(dict(FAMILIES[name].train_options))
    shrink_images(cfg, FAMILIES[name].size)
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_trains_and_evaluates_from_the_upstream_config(name, tmp_path):
    trained = train_tiny(_config(name, tmp_path), tmp_path)
    work_dir = Path(trained.cfg.work_dir)
    # CheckpointHook's save_last (epoch_1.pth: MMPretrain's hook counts epochs)
    checkpoint = work_dir / (work_dir / "last_checkpoint").read_text().strip()
    assert checkpoint.is_file(), sorted(p.name for p in work_dir.iterdir())
    # then as `vistra test CONFIG iter_2.pth` on one batch, in a runner of its own
    cfg = _config(name, tmp_path)
    cfg.work_dir = trained.cfg.work_dir
    cfg.launcher = "none"
    cfg.load_from = str(checkpoint)
    shrink(cfg, tmp_path / "data")
    tester = Runner.from_config(cfg, purpose="test")
    try:
        metrics = tester.test()
    finally:
        logging.getLogger("vistra").handlers.clear()
    assert metrics and all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
