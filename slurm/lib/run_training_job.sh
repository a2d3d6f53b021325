#!/bin/bash
# The body of the training sbatch scripts (pretrain_ddpm.sbatch, pretrain_ssl.sbatch): one srun of a
# training command on every task, resuming from the run's latest checkpoint after a requeue.
#
#   run_training_job.sh COMMAND... -- CONFIG [KEY=VALUE ...]     e.g. "train generator" or "pretrain"
set -euo pipefail

command=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do command+=("$1"); shift; done
shift  # the --
if [ $# -lt 1 ]; then
    echo "usage: sbatch slurm/<script>.sbatch CONFIG [KEY=VALUE ...]" >&2
    exit 2
fi

# The venv the job runs in: $SYNMED_VENV, else .venv in the directory sbatch was called from.
VENV=${SYNMED_VENV:-$SLURM_SUBMIT_DIR/.venv}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}  # fail fast, not hang
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export PYTHONUNBUFFERED=1

echo "synmed: job ${SLURM_JOB_ID} restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST}" \
     "(${SLURM_NTASKS} tasks, $(date -u +%FT%TZ)): ${command[*]} $*"
# --kill-on-bad-exit: one rank dying ends the step instead of leaving the others in a collective.
if [ -n "${SYNMED_PROCS_PER_NODE:-}" ]; then
    # One task per node; accelerate launch starts SYNMED_PROCS_PER_NODE processes on each.
    srun --kill-on-bad-exit=1 --ntasks-per-node=1 "$VENV/bin/python" -m suite launch \
        --procs-per-node "$SYNMED_PROCS_PER_NODE" -- "${command[@]}" "$@" --auto-resume
else
    srun --kill-on-bad-exit=1 "$VENV/bin/python" -m suite "${command[@]}" "$@" --auto-resume
fi
