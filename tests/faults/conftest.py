"""Fault-injection tests (issue #15): real training processes killed, signalled, starved
of disk space or of a dataloader worker. Their counts ("20/20 kill -9 ...") are printed in
a "fault injection" section of the terminal summary."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # fault_support (the tests) and fault_hooks (the children)
    sys.path.insert(0, str(HERE))


def pytest_terminal_summary(terminalreporter):
    from fault_support import FULL, SUMMARY

    if SUMMARY:
        scope = "full counts" if FULL else "the default sample; VISTRA_FAULTS_FULL=1 for all"
        terminalreporter.section(f"fault injection ({scope})")
        for line in SUMMARY:
            terminalreporter.write_line(line)
