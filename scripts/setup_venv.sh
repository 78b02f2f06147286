#!/usr/bin/env bash
# Create .venv (if needed) and install vistra with its test extra into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
stamp=.venv/.vistra-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing vistra and its dependencies into .venv (first time: a minute or two)"
    .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
    .venv/bin/python -m pip install --quiet -e '.[test]' 2>&1 | grep -v "is ignored" || true
    .venv/bin/python -c "import vistra, torch, torchvision" || { echo "[setup] install failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
