#!/usr/bin/env bash
# Install the upstream oracle (MMEngine, mmcv-lite, MMPretrain, MMSegmentation, MMSelfSup)
# with `pip install --target` into a cache folder outside the project's venv, and print
# that folder. vistra never imports these packages; tests/upstream runs them in a separate
# process (tools/upstream/run.sh) and compares.
#
# The folder is ${VISTRA_ORACLE_DIR:-$HOME/.cache/vistra/upstream-<hash of the pins>} and
# is reused while the pins below are unchanged, so repeated runs cost nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

# The packages the oracle is made of, pinned. MMSelfSup 1.0.0 imports mmcls (MMPretrain's
# earlier name), so mmcls 1.0.0rc6 comes too. Everything installs with --no-deps: numpy,
# torch, matplotlib, rich, pyyaml come from the venv, so the oracle computes with the very
# same torch as vistra.
PINS=(
    mmengine==0.10.7 mmcv-lite==2.1.0 mmpretrain==1.2.0 mmsegmentation==1.2.2
    mmselfsup==1.0.0 mmcls==1.0.0rc6
    addict==2.4.0 yapf==0.40.1 termcolor==2.4.0 opencv-python-headless==4.10.0.84
    einops==0.8.0 mat4py==0.6.0 model-index==0.1.11 ordered-set==4.1.0 prettytable==3.10.0
    wcwidth==0.2.13 scipy==1.14.1 importlib-metadata==8.0.0 zipp==3.19.2
    platformdirs==4.2.2 tomli==2.0.1 attrs==23.2.0 future==1.0.0 six==1.16.0
    scikit-learn==1.5.1 joblib==1.4.2 threadpoolctl==3.5.0 ftfy==6.2.0 regex==2024.5.15
)
hash=$(printf '%s\n' "${PINS[@]}" "$("$PY" -c 'import sys; print(sys.version_info[:2])')" \
    | sha256sum | cut -c1-12)
DIR=${VISTRA_ORACLE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/vistra/upstream-$hash}
if [ ! -f "$DIR/.complete" ]; then
    echo "[oracle] installing ${#PINS[@]} pinned packages into $DIR" >&2
    rm -rf "$DIR.partial"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
        --target "$DIR.partial" "${PINS[@]}" 2>&1 | grep -v "is ignored" >&2 || true
    for pkg in mmengine mmcv mmpretrain mmseg mmselfsup mmcls cv2 scipy; do
        [ -d "$DIR.partial/$pkg" ] || { echo "[oracle] install failed: no $pkg in $DIR.partial" >&2; exit 1; }
    done
    rm -rf "$DIR"
    mv "$DIR.partial" "$DIR"
    touch "$DIR/.complete"
fi
echo "$DIR"
