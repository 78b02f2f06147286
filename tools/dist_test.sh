#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test flags]
# Environment: NNODES (1), NODE_RANK (0), PORT (a free one on a single node, else 29500),
#              MASTER_ADDR (127.0.0.1)
# On CPU: CUDA_VISIBLE_DEVICES=-1 tools/dist_test.sh CONFIG CKPT 2   (GPUS = processes per node)
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
exec "$(dirname "$0")/_torchrun.sh" test.py "$GPUS" "$CONFIG" "$CHECKPOINT" "${@:4}"
