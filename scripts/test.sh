#!/usr/bin/env bash
# Run the test suite: installs into .venv if needed, then lint and pytest.
#   --upstream   compare with the upstream packages over every shipped config (installs the
#                oracle into a cache folder first; the default suite runs a fixed sample)
#   --zoo        train every family of the segmentation zoo from its upstream config, and
#                every shipped config (the default suite trains a light sample of each)
#   --faults     the fault-injection tests at full count (20 kill -9 checkpoint writes,
#                a SIGSTOPped torchrun rank,
#                10+10 SIGTERM resumes; tests/faults; the default suite runs a small sample)
# Other arguments go to pytest (e.g. scripts/test.sh tests/config -x).
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for arg in "$@"; do
    case "$arg" in
        --upstream) export VISTRA_UPSTREAM_FULL=1 ;;
        --faults) export VISTRA_FAULTS_FULL=1 ;;
        --zoo) export VISTRA_ZOO_FULL=1 ;;
        *) args+=("$arg") ;;
    esac
done
bash scripts/setup_venv.sh
.venv/bin/ruff check vistra tests tools benchmarks
.venv/bin/ruff format --check vistra tests tools benchmarks
# --upstream / --faults / --zoo alone run tests/upstream / tests/faults / the zoo training tests;
# with paths of their own, those
has_path=0
for arg in ${args[@]+"${args[@]}"}; do
    [ -e "${arg%%::*}" ] && has_path=1
done
if [ "$has_path" -eq 0 ]; then
    [ -z "${VISTRA_UPSTREAM_FULL:-}" ] || args+=(tests/upstream)
    [ -z "${VISTRA_FAULTS_FULL:-}" ] || args+=(tests/faults tests/dist/test_torchrun.py)
    [ -z "${VISTRA_ZOO_FULL:-}" ] || args+=(tests/upstream/test_seg_zoo_train.py tests/configs/test_config_tree.py)
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
