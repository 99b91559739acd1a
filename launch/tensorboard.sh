#!/usr/bin/env bash
# TensorBoard over a (shared) log directory, reachable from other machines:
#   launch/tensorboard.sh                 # runs/ : every training run and search side by side
#   LOGDIR=/shared/runs PORT=6007 launch/tensorboard.sh
set -euo pipefail
exec tensorboard --logdir="${LOGDIR:-runs}" --bind_all --port="${PORT:-6006}"
