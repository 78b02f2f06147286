#!/usr/bin/env bash
# Usage: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test flags]
# Environment: GPUS (8), GPUS_PER_NODE (8; 0 runs CPU tasks), CPUS_PER_TASK (5), SRUN_ARGS,
#              MASTER_PORT (29500; or --cfg-options env_cfg.dist_cfg.port=N)
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
exec "$(dirname "$0")/_srun.sh" test.py "$PARTITION" "$JOB_NAME" "$CONFIG" "$CHECKPOINT" "${@:5}"
