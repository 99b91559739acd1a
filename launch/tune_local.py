"""A KerasTuner search shared by a chief and N workers on this machine (oracle on 127.0.0.1).

  python launch/tune_local.py --workers=2 -- --tuner=random --max_trials=6 --workdir=runs/tune

Every process runs the same `python -m bonefrac.tune FLAGS`; only KERASTUNER_TUNER_ID differs
(`chief` serves the oracle and trains nothing; `tuner0`, `tuner1`, ... each run trials). Give
each worker its own GPUs with CUDA_VISIBLE_DEVICES, or `--strategy=mirrored` over several.
For several machines see launch/tune_cluster.sh.
"""

import argparse
import sys

import local_procs


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", type=int, default=2, help="tuner processes besides the chief")
  parser.add_argument("--port", type=int, default=0, help="the oracle's port (0: a free one)")
  parser.add_argument("tune_flags", nargs="*", help="flags of bonefrac.tune, after --")
  args = parser.parse_args()
  if args.workers < 1:
    parser.error("--workers must be at least 1")
  port = str(args.port or local_procs.free_port())
  command = [sys.executable, "-m", "bonefrac.tune", *args.tune_flags]
  names = ["chief"] + [f"tuner{i}" for i in range(args.workers)]
  processes = [(name, command, {"KERASTUNER_TUNER_ID": name, "KERASTUNER_ORACLE_IP": "127.0.0.1",
                                "KERASTUNER_ORACLE_PORT": port}) for name in names]
  return local_procs.report(local_procs.run_all(processes))


if __name__ == "__main__":
  sys.exit(main())
