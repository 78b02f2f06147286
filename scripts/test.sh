#!/usr/bin/env bash
# Run the test suite: installs into .venv if needed, then lint and pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/config -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
.venv/bin/ruff check vistra tests tools benchmarks
.venv/bin/ruff format --check vistra tests tools benchmarks
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "no tests were collected: failing" >&2
    exit 1
fi
exit "$rc"
