"""MultiWorkerMirroredStrategy on this machine: N `bonefrac.train` workers on 127.0.0.1.

  python launch/local_workers.py --workers=2 -- --strategy=multi_worker_mirrored --workdir=runs/mwm

Every worker runs the same command; only its TF_CONFIG task index differs (worker 0 is the
chief, which writes the outputs). Prints each worker's exit status; exits 1 if any failed.
With GPUs, give each worker its own through CUDA_VISIBLE_DEVICES (`--gpus_per_worker`).
"""

import argparse
import json
import sys

import local_procs


def tf_config(ports, index):
  """The TF_CONFIG of worker `index` in a cluster of workers on 127.0.0.1:`ports`."""
  return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}})


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--gpus_per_worker", type=int, default=0,
                      help="give worker i the GPUs i*k .. i*k+k-1 (0: leave CUDA_VISIBLE_DEVICES)")
  parser.add_argument("--module", default="bonefrac.train", help="the Python module each runs")
  parser.add_argument("flags", nargs="*", help="its flags, after --")
  args = parser.parse_args()
  if args.workers < 1:
    parser.error("--workers must be at least 1")
  ports = [local_procs.free_port() for _ in range(args.workers)]
  command = [sys.executable, "-m", args.module, *args.flags]
  processes = []
  for i in range(args.workers):
    env = {"TF_CONFIG": tf_config(ports, i)}
    if args.gpus_per_worker:
      k = args.gpus_per_worker
      env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in range(i * k, i * k + k))
    processes.append((f"worker{i}", command, env))
  return local_procs.report(local_procs.run_all(processes))


if __name__ == "__main__":
  sys.exit(main())
