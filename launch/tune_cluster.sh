#!/usr/bin/env bash
# Tested under srun on a one-node Slurm cluster (tests/test_slurm.py); never run on several
# machines or GPUs.
# One process of a KerasTuner search spread over several machines; run it on every machine
# with the same flags. The workdir must be shared (NFS, a bucket mounted with gcsfuse, ...).
#
#   chief   (one machine):  TUNER_ID=chief  CHIEF_HOST=10.0.0.5 launch/tune_cluster.sh --workdir=/shared/tune --tuner=bayesian --max_trials=40
#   workers (the others):   TUNER_ID=tuner0 CHIEF_HOST=10.0.0.5 launch/tune_cluster.sh --workdir=/shared/tune --tuner=bayesian --max_trials=40
#                           TUNER_ID=tuner1 ...
#
# Under Slurm (`srun launch/tune_cluster.sh FLAGS` in an sbatch script with one task per node)
# TUNER_ID and CHIEF_HOST come from the job: task 0 is the chief on the first node, task k is
# tuner(k-1). The chief only serves the oracle; each worker trains trials, with
# `--strategy=mirrored` over the GPUs of its machine if it has several.
# ORACLE_PORT (default 8000) must be reachable from the workers.
set -euo pipefail

if [[ -z "${TUNER_ID:-}" && -n "${SLURM_PROCID:-}" ]]; then
  if [[ "${SLURM_PROCID}" == 0 ]]; then TUNER_ID=chief; else TUNER_ID="tuner$((SLURM_PROCID - 1))"; fi
fi
if [[ -z "${CHIEF_HOST:-}" && -n "${SLURM_JOB_NODELIST:-}" ]]; then
  CHIEF_HOST=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)
fi
: "${TUNER_ID:?set TUNER_ID (chief, tuner0, tuner1, ...) or run under srun}"
: "${CHIEF_HOST:?set CHIEF_HOST to the address of the chief machine or run under srun}"

export KERASTUNER_TUNER_ID="${TUNER_ID}"
export KERASTUNER_ORACLE_IP="${CHIEF_HOST}"
export KERASTUNER_ORACLE_PORT="${ORACLE_PORT:-8000}"
if [[ "${TUNER_ID}" == chief ]]; then
  export KERASTUNER_ORACLE_IP=0.0.0.0  # the chief listens on every interface
fi
exec python -m bonefrac.tune "$@"
