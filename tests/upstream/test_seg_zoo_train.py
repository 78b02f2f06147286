"""Every family of the segmentation zoo trains and evaluates from MMSegmentation's own config
file (the wheel's, unchanged on disk): two iterations with one validation pass, then a test
pass over one image, on tiny generated data at a 32x32 crop on CPU (tests/helpers/tiny_runs.py
does the shrinking, as for vistra's shipped configs).

The default suite takes a light sample of the families (``LIGHT``);
VISTRA_ZOO_FULL=1 (``scripts/test.sh --zoo``) takes every family in tests/helpers/seg_zoo.py,
ViT-L and the other heavy members included, and VISTRA_SEG_ONLY=name,... the ones named.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import pytest
import seg_zoo
from oracle_support import config_tree
from tiny_runs import shrink, train_tiny

from vistra.config import Config
from vistra.engine.runner import Runner

ZOO_FULL = os.environ.get("VISTRA_ZOO_FULL", "") not in ("", "0")
# A few seconds each on two cores: one of each kind of network, none of the 100M+ models.
LIGHT = (
    "fcn-r50-d8",
    "upernet-r50",
    "ocrnet-hr18s",
    "bisenetv2-fcn",
    "mobilenet-v3-d8-s-lraspp",
    "segformer-mit-b0",
    "swin-tiny-upernet",
    "knet-s3-r50-d8-fcn",
)
FAMILIES = seg_zoo.selected(ZOO_FULL)
if not ZOO_FULL and not os.environ.get("VISTRA_SEG_ONLY"):
    FAMILIES = {name: FAMILIES.get(name, seg_zoo.FAMILIES[name]) for name in LIGHT}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_trains_and_evaluates_from_the_upstream_config(name, tmp_path):
    path = config_tree("mmseg") / FAMILIES[name]
    trained = train_tiny(Config.fromfile(str(path)), tmp_path)
    checkpoint = Path(trained.cfg.work_dir) / "iter_2.pth"  # CheckpointHook's save_last
    assert checkpoint.is_file(), sorted(p.name for p in checkpoint.parent.iterdir())
    # then as `vistra test CONFIG iter_2.pth` on one image, in a runner of its own
    cfg = Config.fromfile(str(path))
    cfg.work_dir = trained.cfg.work_dir
    cfg.launcher = "none"
    cfg.load_from = str(checkpoint)
    shrink(cfg, tmp_path / "data")
    cfg.test_dataloader.dataset.indices = 1
    tester = Runner.from_config(cfg, purpose="test")
    try:
        metrics = tester.test()
    finally:
        logging.getLogger("vistra").handlers.clear()
    assert len(tester.test_dataloader.dataset) == 1
    assert "mIoU" in metrics and math.isfinite(metrics["mIoU"]), metrics
