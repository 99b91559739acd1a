#!/usr/bin/env bash
# UNTESTED: never run (no GPU host, no Slurm cluster or second machine yet); a starting point.
# Every GPU of this machine, one process (MirroredStrategy, NCCL all-reduce):
#   launch/multi_gpu.sh --model=vgg16 --batch_size=256
# CUDA_VISIBLE_DEVICES=0,1 launch/multi_gpu.sh ... picks the GPUs. The global batch is split
# evenly over them; mixed precision is chosen per GPU (--precision=auto).
set -euo pipefail
exec python -m bonefrac.train --strategy=mirrored "$@"
