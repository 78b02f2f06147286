#!/usr/bin/env bash
# Usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train flags]
# Environment: GPUS (8), GPUS_PER_NODE (8; 0 runs CPU tasks), CPUS_PER_TASK (5), SRUN_ARGS,
#              MASTER_PORT (29500; or --cfg-options env_cfg.dist_cfg.port=N)
# WORK_DIR is taken as the work dir when given and not a flag (does not start with '-').
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
ARGS=("${@:4}")
if [ ${#ARGS[@]} -gt 0 ] && [[ "${ARGS[0]}" != -* ]]; then
    ARGS=(--work-dir "${ARGS[0]}" "${ARGS[@]:1}")
fi
exec "$(dirname "$0")/_srun.sh" train.py "$PARTITION" "$JOB_NAME" "$CONFIG" "${ARGS[@]}"
