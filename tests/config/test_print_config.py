"""``vistra print-config``: Python and JSON output, --cfg-options, errors, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vistra.cli.print_config import main
from vistra.config import Config

ROOT = Path(__file__).resolve().parents[2]
LEVEL4 = ROOT / "tests" / "data" / "configs" / "chain" / "sub" / "deeper" / "level4.py"

# Runs print-config in a fresh interpreter and reports whether torch got imported.
PROBE = """
import sys
from vistra.cli.main import main
code = main(sys.argv[1:])
sys.stderr.write("TORCH_IMPORTED=%s\\n" % ("torch" in sys.modules))
sys.exit(code)
"""


def _run(*args: str, probe: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", PROBE] if probe else [sys.executable, "-m", "vistra"]
    return subprocess.run(
        [*command, "print-config", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_python_output_reloads_to_the_merged_config_without_importing_torch(tmp_path):
    result = _run(str(LEVEL4), probe=True)
    assert result.returncode == 0, result.stderr
    assert "TORCH_IMPORTED=False" in result.stderr
    printed = tmp_path / "printed.py"
    printed.write_text(result.stdout)
    assert Config.fromfile(printed).to_dict() == Config.fromfile(LEVEL4).to_dict()


def test_json_output_with_cfg_options():
    result = _run(
        str(LEVEL4),
        "--json",
        "--cfg-options",
        "model.backbone.depth=18",
        "param_scheduler.0.T_max=5",
        "--cfg-options",
        "custom=[(1,2),(3,4)]",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"]["backbone"]["depth"] == 18
    assert data["param_scheduler"][0]["T_max"] == 5
    assert data["model"]["head"]["topk"] == [1, 5]  # tuples become lists
    assert data["custom"] == [[1, 2], [3, 4]]


def test_module_entry_point_works_too():
    result = subprocess.run(
        [sys.executable, "-m", "vistra.cli.print_config", str(LEVEL4), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["work_dir"] == "./work_dirs/level4"


def test_bad_config_is_one_line_on_stderr_and_exit_code_2(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("a = 1\nb = (\n")
    result = _run(str(bad))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"{bad}:2:" in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.py"], "config file not found"),
        ([str(LEVEL4), "--cfg-options", "k=[1,2"], "unbalanced brackets"),
        ([str(LEVEL4), "--cfg-options", "model.backbone.depth.x=1"], "_delete_=True"),
    ],
)
def test_errors_in_process_return_2(args, message, capsys):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_in_process_python_output(capsys):
    assert main([str(LEVEL4), "--cfg-options", "train_dataloader.batch_size=2"]) == 0
    out = capsys.readouterr().out
    assert "batch_size=2" in out and out.startswith("model = dict(")


def test_a_1x_config_with_stale_0x_keys_prints_as_loaded_after_one_notice(tmp_path, capsys):
    path = tmp_path / "stale.py"
    path.write_text(
        "default_scope = 'mmseg'\n"
        "train_dataloader = dict(batch_size=4)\n"
        "train_cfg = dict(type='IterBasedTrainLoop', max_iters=60000)\n"
        "optim_wrapper = dict(optimizer=dict(type='Adam', lr=0.001))\n"
        "total_iters = 60000\n"  # MMSegmentation's CGNet configs keep this 0.x key
    )
    assert main([str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == Config.fromfile(path).to_dict()  # every key kept
    notices = [line for line in captured.err.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1 and "(total_iters)" in notices[0] and "ignored" in notices[0]
