#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [train flags]
# Environment: NNODES (1), NODE_RANK (0), PORT (a free one on a single node), MASTER_ADDR (127.0.0.1)
# On CPU: CUDA_VISIBLE_DEVICES=-1 tools/dist_train.sh CONFIG 2   (GPUS = processes per node)
CONFIG=$1
GPUS=$2
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
    "$DIR/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
