#!/usr/bin/env bash
# Shared by slurm_train.sh and slurm_test.sh: one srun task per GPU (or per CPU process).
# Usage: tools/_srun.sh SCRIPT PARTITION JOB_NAME [script args]
# Environment: GPUS (8) tasks in all, GPUS_PER_NODE (8; 0 = CPU tasks), CPUS_PER_TASK (5),
#              SRUN_ARGS (extra srun flags), MASTER_PORT or env_cfg.dist_cfg.port (29500),
#              PYTHON (python)
set -euo pipefail
SCRIPT=$1
PARTITION=$2
JOB_NAME=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
DIR="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$DIR/..":${PYTHONPATH:-}

if [ "$GPUS_PER_NODE" -gt 0 ]; then
    PLACEMENT=(--gres="gpu:$GPUS_PER_NODE" --ntasks-per-node="$GPUS_PER_NODE")
else
    PLACEMENT=()  # CPU tasks: Slurm packs them by CPUS_PER_TASK
    export CUDA_VISIBLE_DEVICES=-1
fi

# --kill-on-bad-exit: one rank failing ends the others at once instead of leaving them
# waiting in a collective
# shellcheck disable=SC2086  # SRUN_ARGS holds several flags
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --ntasks="$GPUS" \
    "${PLACEMENT[@]}" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    $PYTHON -u "$DIR/$SCRIPT" "${@:4}" --launcher slurm
