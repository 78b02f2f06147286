#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: run tools/SCRIPT under torchrun.
# Usage: tools/_torchrun.sh SCRIPT NPROC_PER_NODE CONFIG [script args]
# Environment: NNODES (1), NODE_RANK (0), PORT, MASTER_ADDR (127.0.0.1), PYTHON (python)
set -euo pipefail
SCRIPT=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHON=${PYTHON:-python}
export PYTHONPATH="$DIR/..":${PYTHONPATH:-}
PORTS="$DIR/../vistra/dist/ports.py"  # run as a file: stdlib only, no torch import

if [ -z "$PORT" ]; then
    if [ "$NNODES" -gt 1 ]; then
        PORT=29500  # every node must agree on it, so no random choice
    else
        PORT=$($PYTHON "$PORTS")  # two jobs on one machine just work
    fi
elif [ "$NODE_RANK" -eq 0 ]; then
    # node 0 hosts the rendezvous: a busy port is an error now, not a traceback or a hang
    $PYTHON "$PORTS" "$PORT" --set-by PORT \
        --hint "set PORT to a free port, or leave PORT unset on a single node to get one" || exit 1
fi

exec $PYTHON -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node-rank="$NODE_RANK" \
    --master-addr="$MASTER_ADDR" \
    --nproc-per-node="$NPROC" \
    --master-port="$PORT" \
    "$DIR/$SCRIPT" \
    "$3" \
    --launcher pytorch "${@:4}"
