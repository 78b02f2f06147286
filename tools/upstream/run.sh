#!/usr/bin/env bash
# Run an oracle command with the upstream packages importable: installs them first if
# needed (tools/upstream/install.sh), then `python tools/upstream/oracle.py "$@"`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PY=${PYTHON:-$here/../../.venv/bin/python}
dir=$(bash "$here/install.sh")
PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" "$here/oracle.py" "$@"
