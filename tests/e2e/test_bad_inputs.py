"""Bad inputs through the real CLI: configs, flags, data and checkpoints (issue #15).

Every case of ``tests/helpers/bad_inputs.py`` runs ``vistra train``/``test``/``print-config``
in a subprocess and must exit non-zero with no traceback, end stderr with one ``error:``
line (two at most) holding the case's pieces (the key, the value, a valid choice), no line
over 400 characters, and leave every file of the pre-existing work dir (a real run's
``epoch_1.pth`` and ``last_checkpoint``, a sentinel) as it was, bytes and mtime.

For cases found before training starts (``check=True``), ``vistra check`` with the same
arguments must print the identical error line(s) (but for the program's name argparse puts
in, and print-config's absolute config path). By default that runs for a fixed spread
sample (every other such case of those run). The default suite runs every other case
(``VISTRA_ERRORS_FULL=1``: all of them, and ``vistra check`` for each); the selected cases'
commands run two at a time before the assertions, to keep the file near 1.3 minutes on 2
cores. Runtime-only faults (a corrupt image in
the data, a NaN loss, a shape mismatch in the first forward, a bad checkpoint file) are
``check=False``; the image ones are found by ``vistra check --data``.

The table of ``docs/*/errors.md`` is written from the same cases by
``python tests/helpers/bad_inputs.py``; the last test keeps the two in step.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from bad_inputs import (
    CASES,
    DOCS,
    MAX_LINE,
    Case,
    check_args,
    error_lines,
    make_good_run,
    prepare,
    same_words,
)
from e2e_support import Result, run_cli

pytestmark = pytest.mark.slow

FULL = os.environ.get("VISTRA_ERRORS_FULL", "") not in ("", "0")
# the default suite runs every other case (a spread over the four groups: config, flag, data,
# checkpoint), and ``vistra check`` for every other checkable one of those
SELECTED = CASES if FULL else CASES[::2]
_CHECKED = [c.name for c in SELECTED if c.check]
CHECK_SAMPLE = set(_CHECKED if FULL else _CHECKED[::2])


@pytest.fixture(scope="module")
def good_work_dir(tmp_path_factory) -> Path:
    """A finished one-epoch run: every case starts from a copy of its work dir."""
    return make_good_run(tmp_path_factory.mktemp("good"))


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_one_error_line(result: Result) -> list[str]:
    """The error line(s) of a failed command, after the checks every case shares."""
    assert result.returncode != 0, result.output[-3000:]
    assert "Traceback" not in result.output, result.output[-3000:]
    errors = error_lines(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(errors) <= 2, result.stderr[-3000:]
    assert lines[-1] in errors, result.stderr[-3000:]  # the last word, not buried in a log
    for line in errors:
        assert len(line) <= MAX_LINE, f"{len(line)} characters: {line}"
    return errors


def assert_pieces(case: Case, errors: list[str]) -> None:
    text = "\n".join(errors)
    missing = [piece for piece in case.pieces if piece not in text]
    assert not missing, f"{case.name}: {missing} not in {text!r}"


@dataclass
class Outcome:
    """What one case's commands did, run ahead of the assertions (two at a time)."""

    folder: Path
    args: tuple[str, ...]
    result: Result
    changed: list[str]
    checked: Result | None = None
    checked_data: Result | None = None


def _run_case(case: Case, folder: Path, good_work_dir: Path) -> Outcome:
    args, work = prepare(case, folder, good_work_dir)
    before = snapshot(work)
    result = run_cli(*args, cwd=folder)
    after = snapshot(work)
    changed = [name for name, seen in before.items() if after.get(name) != seen]
    outcome = Outcome(folder, args, result, changed)
    if case.name in CHECK_SAMPLE:
        outcome.checked = run_cli(*check_args(args), cwd=folder)
    if case.check_data:
        outcome.checked_data = run_cli(*check_args(args), "--data", cwd=folder)
    return outcome


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory, good_work_dir) -> dict[str, Outcome]:
    """Every selected case, run two at a time: each command is a subprocess that mostly
    waits on its own start-up (torch's import), so two cores finish in about half the time."""
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.originalname == "test_bad_input_is_one_line_and_loses_nothing"
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            case.name: pool.submit(
                _run_case, case, tmp_path_factory.mktemp(case.name), good_work_dir
            )
            for case in selected
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", SELECTED, ids=[c.name for c in SELECTED])
def test_bad_input_is_one_line_and_loses_nothing(outcomes, case):
    outcome = outcomes[case.name]
    errors = assert_one_error_line(outcome.result)
    assert_pieces(case, errors)
    assert not outcome.changed, f"{case.name} changed or removed {outcome.changed} in the work dir"
    if outcome.checked is not None:
        checked = outcome.checked
        assert checked.returncode != 0, checked.output[-3000:]
        assert "Traceback" not in checked.output, checked.output[-3000:]
        said = [same_words(line, outcome.folder, "check") for line in error_lines(checked)]
        assert said == [same_words(line, outcome.folder, case.command) for line in errors], said
    if outcome.checked_data is not None:
        assert_pieces(case, assert_one_error_line(outcome.checked_data))


def test_case_table_is_sound():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 40
    assert {c.group for c in CASES} == {"config", "flag", "data", "checkpoint"}
    for case in CASES:
        assert case.pieces and case.fix and case.fix_zh, case.name
        assert case.check or case.note, f"{case.name}: say why vistra check cannot find it"


@pytest.mark.parametrize("lang", sorted(DOCS))
def test_every_case_is_in_the_errors_page(lang):
    text = DOCS[lang].read_text(encoding="utf-8")
    missing = [c.name for c in CASES if f"| `{c.name}` |" not in text]
    assert not missing, f"{DOCS[lang]} lacks {missing}; run python tests/helpers/bad_inputs.py"
