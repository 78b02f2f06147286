#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test flags]
# Environment: NNODES (1), NODE_RANK (0), PORT (a free one on a single node), MASTER_ADDR (127.0.0.1)
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHON=${PYTHON:-python}

if [ -z "$PORT" ]; then
    if [ "$NNODES" -gt 1 ]; then PORT=29500; else PORT=$($PYTHON -c "from vistra.dist import free_port; print(free_port())"); fi
fi

PYTHONPATH="$DIR/..":${PYTHONPATH:-} \
exec $PYTHON -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node-rank="$NODE_RANK" \
    --master-addr="$MASTER_ADDR" \
    --nproc-per-node="$GPUS" \
    --master-port="$PORT" \
    "$DIR/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
