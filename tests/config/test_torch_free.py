"""Nothing in vistra.config imports torch: loading, merging and dumping stay fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVEL4 = ROOT / "tests" / "data" / "configs" / "chain" / "sub" / "deeper" / "level4.py"

SCRIPT = f"""
import pkgutil, importlib, sys, tempfile, os
import vistra.config
for info in pkgutil.iter_modules(vistra.config.__path__, "vistra.config."):
    importlib.import_module(info.name)
from vistra.config import Config, parse_cfg_options
cfg = Config.fromfile({str(LEVEL4)!r})
cfg.merge_from_dict(parse_cfg_options(["model.backbone.depth=18"]))
text = cfg.pretty_text
with tempfile.TemporaryDirectory() as tmp:
    for ext in (".py", ".json", ".yaml"):
        cfg.dump(os.path.join(tmp, "c" + ext))
        Config.fromfile(os.path.join(tmp, "c" + ext))
print("torch" in sys.modules)
"""


def test_config_package_never_imports_torch():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
