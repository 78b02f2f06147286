"""What `vistra train` skips on its way to the first iteration: the 0.x translation tables
for a 1.x config, formatting the same config text twice, resolving the same constructor
annotations once per argument. Each skip must never change a result."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from pathlib import Path

from vistra.config import Config
from vistra.engine.preflight import PreflightError, preflight

ROOT = Path(__file__).resolve().parents[2]


def test_pretty_text_is_reused_until_a_value_changes():
    cfg = Config(dict(a=1, model=dict(backbone=dict(depth=18, out_indices=(3,)))))
    first = cfg.pretty_text
    assert cfg.pretty_text is first  # unchanged: the same text, not formatted again
    cfg.model.backbone.depth = 50  # nested, in place
    assert "depth=50" in cfg.pretty_text
    cfg.model.backbone.out_indices = [3]  # same values, another container kind
    assert "out_indices=[3]" in cfg.pretty_text
    cfg.a = 1.0  # equal value, another type
    assert cfg.pretty_text.startswith("a = 1.0\n")
    cfg.merge_from_dict({"model.backbone.depth": 101})
    assert "depth=101" in cfg.pretty_text
    assert Config.fromstring(cfg.pretty_text, ".py").to_dict() == cfg.to_dict()


def test_pretty_text_of_a_copy_follows_the_copy():
    cfg = Config(dict(model=dict(depth=18)))
    assert "depth=18" in cfg.pretty_text  # cached before the copies are made
    for other in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg)), copy.copy(cfg)):
        other.model = dict(depth=34)
        assert "depth=34" in other.pretty_text
    assert "depth=18" in cfg.pretty_text


def test_preflight_reports_a_wrong_scalar_every_time():
    """The constructor annotations are resolved once; the check still runs each call."""
    cfg = Config(
        dict(
            model=dict(type="ImageClassifier", backbone=dict(type="ResNet", depth=18)),
            train_dataloader=dict(
                batch_size=2,
                dataset=dict(type="ShapesDataset", num_samples="many", pipeline=[]),
                sampler=dict(type="DefaultSampler", shuffle=True),
            ),
        )
    )
    for _ in range(2):
        try:
            preflight(copy.deepcopy(cfg), "train")
        except PreflightError as exc:
            assert "num_samples='many'" in str(exc) and "expects int" in str(exc), str(exc)
        else:
            raise AssertionError("preflight accepted num_samples='many'")


def test_a_1x_config_loads_without_the_0x_translation_tables():
    script = (
        "import sys\n"
        "from vistra.cli.common import load_config\n"
        f"load_config({str(ROOT / 'configs/quickstart/cls_shapes.py')!r}, None, 'none')\n"
        "print(sorted(m for m in ('vistra.config.legacy.schedule', 'vistra.config.legacy.data',"
        " 'vistra.config.legacy.pipelines', 'vistra.config.legacy.model') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
