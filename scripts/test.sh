#!/usr/bin/env bash
# Run the test suite: installs into .venv if needed, then lint and pytest.
#   --upstream   compare with the upstream packages over every shipped config (installs the
#                oracle into a cache folder first; the default suite runs a fixed sample)
# Other arguments go to pytest (e.g. scripts/test.sh tests/config -x).
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for arg in "$@"; do
    case "$arg" in
        --upstream) export VISTRA_UPSTREAM_FULL=1 ;;
        *) args+=("$arg") ;;
    esac
done
bash scripts/setup_venv.sh
.venv/bin/ruff check vistra tests tools benchmarks
.venv/bin/ruff format --check vistra tests tools benchmarks
if [ -n "${VISTRA_UPSTREAM_FULL:-}" ]; then
    # --upstream alone runs tests/upstream; with paths of its own, those
    has_path=0
    for arg in ${args[@]+"${args[@]}"}; do
        [ -e "${arg%%::*}" ] && has_path=1
    done
    [ "$has_path" -eq 1 ] || args+=(tests/upstream)
fi
set +e
.venv/bin/python -m pytest ${args[@]+"${args[@]}"}
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "no tests were collected: failing" >&2
    exit 1
fi
exit "$rc"
