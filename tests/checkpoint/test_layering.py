"""Checkpoint I/O sits below the engine: models load pretrained weights without it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parents[2] / "vistra"


def _imported_modules(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(PACKAGE.parent))] = names
    return found


def test_models_and_checkpoint_never_import_the_engine():
    for folder in ("models", "checkpoint"):
        for path, names in _imported_modules(PACKAGE / folder).items():
            engine = sorted(
                n for n in names if n == "vistra.engine" or n.startswith("vistra.engine.")
            )
            assert not engine, f"{path} imports {engine}"


def test_checkpoint_imports_only_itself_of_vistra():
    for path, names in _imported_modules(PACKAGE / "checkpoint").items():
        other = sorted(
            n for n in names if n.startswith("vistra.") and not n.startswith("vistra.checkpoint")
        )
        assert not other, f"{path} imports {other}"


def test_pretrained_init_in_a_fresh_process_leaves_the_engine_unimported(tmp_path):
    """Import vistra.models and run init_cfg=Pretrained; sys.modules holds no vistra.engine."""
    weights = torch.nn.Linear(2, 2)
    torch.save({"state_dict": weights.state_dict()}, tmp_path / "w.pth")
    code = (
        "import sys, torch\n"
        "import vistra.models\n"
        "from vistra.models.init import PretrainedInit\n"
        "model = torch.nn.Linear(2, 2)\n"
        f"PretrainedInit(checkpoint={str(tmp_path / 'w.pth')!r})(model)\n"
        f"assert torch.equal(model.weight, torch.load({str(tmp_path / 'w.pth')!r})['state_dict']['weight'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('vistra.engine')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
