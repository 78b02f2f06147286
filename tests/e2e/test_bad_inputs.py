"""Bad inputs through the real CLI: configs, flags, data and checkpoints (issue #15).

Every case of ``tests/helpers/bad_inputs.py`` runs ``vistra train``/``test``/``print-config``
in a subprocess and must exit non-zero with no traceback, end stderr with one ``error:``
line (two at most) holding the case's pieces (the key, the value, a valid choice), no line
over 400 characters, and leave every file of the pre-existing work dir (a real run's
``epoch_1.pth`` and ``last_checkpoint``, a sentinel) as it was, bytes and mtime.

For cases found before training starts (``check=True``), ``vistra check`` with the same
arguments must print the identical error line(s) (but for the program's name argparse puts
in, and print-config's absolute config path). By default that runs for a fixed spread
sample (every fourth such case), to keep the file near 4 minutes on 2 cores;
``VISTRA_ERRORS_FULL=1`` runs it for all of them. Runtime-only faults (a corrupt image in
the data, a NaN loss, a shape mismatch in the first forward, a bad checkpoint file) are
``check=False``; the image ones are found by ``vistra check --data``.

The table of ``docs/*/errors.md`` is written from the same cases by
``python tests/helpers/bad_inputs.py``; the last test keeps the two in step.
"""

from __future__ import annotations

import hashlib
import os
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
_CHECKED = [c.name for c in CASES if c.check]
CHECK_SAMPLE = set(_CHECKED if FULL else _CHECKED[::4])


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


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(tmp_path, good_work_dir, case):
    args, work = prepare(case, tmp_path, good_work_dir)
    before = snapshot(work)
    result = run_cli(*args, cwd=tmp_path)
    errors = assert_one_error_line(result)
    assert_pieces(case, errors)
    after = snapshot(work)
    changed = [name for name, seen in before.items() if after.get(name) != seen]
    assert not changed, f"{case.name} changed or removed {changed} in the work dir"

    if case.name in CHECK_SAMPLE:
        checked = run_cli(*check_args(args), cwd=tmp_path)
        assert checked.returncode != 0, checked.output[-3000:]
        assert "Traceback" not in checked.output, checked.output[-3000:]
        said = [same_words(line, tmp_path, "check") for line in error_lines(checked)]
        assert said == [same_words(line, tmp_path, case.command) for line in errors], said
    if case.check_data:
        checked = run_cli(*check_args(args), "--data", cwd=tmp_path)
        assert_pieces(case, assert_one_error_line(checked))


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
