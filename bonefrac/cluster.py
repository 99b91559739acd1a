"""A worker's TF_CONFIG, derived from its Kubernetes indexed Job, from the installed package.

  python -m bonefrac.cluster tf-config                     # prints this pod's TF_CONFIG
  python -m bonefrac.cluster run -- python -m bonefrac.train --strategy=multi_worker_mirrored ...

An indexed Job gives each pod JOB_COMPLETION_INDEX and the hostname <job>-<index>; with the
pod template's `subdomain` set to a headless Service, <job>-<index>.<service> resolves to it.
Reads WORKERS (the Job's completions), JOB_NAME, SERVICE (default JOB_NAME) and PORT (2222).
`run` sets TF_CONFIG and replaces itself with the command (no shell needed in the pod).
Standard library only: it starts before TensorFlow. A missing or bad variable: one line, exit 2.
"""

import json
import os
import sys
from typing import Dict, List, Mapping

USAGE = "usage: python -m bonefrac.cluster tf-config | run -- COMMAND [ARGS...]"


def kubernetes_tf_config(env: Mapping[str, str]) -> Dict:
  """TF_CONFIG for worker JOB_COMPLETION_INDEX of WORKERS pods named JOB_NAME-<i>.SERVICE."""
  try:
    index, workers, job = int(env["JOB_COMPLETION_INDEX"]), int(env["WORKERS"]), env["JOB_NAME"]
  except (KeyError, ValueError) as e:
    raise ValueError(f"{e} missing or not a number; set JOB_COMPLETION_INDEX (the indexed Job "
                     "does), WORKERS and JOB_NAME") from None
  if not 0 <= index < workers:
    raise ValueError(f"JOB_COMPLETION_INDEX={index} is not below WORKERS={workers}")
  service, port = env.get("SERVICE", job), env.get("PORT", "2222")
  hosts = [f"{job}-{i}.{service}:{port}" for i in range(workers)]
  return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


def main(argv: List[str]) -> int:
  if argv[:1] == ["tf-config"] and len(argv) == 1:
    print(json.dumps(kubernetes_tf_config(os.environ)))
    return 0
  if argv[:2] == ["run", "--"] and len(argv) > 2:
    os.environ["TF_CONFIG"] = json.dumps(kubernetes_tf_config(os.environ))
    os.execvp(argv[2], argv[2:])  # does not return
  raise ValueError(USAGE)


if __name__ == "__main__":
  try:
    sys.exit(main(sys.argv[1:]))
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
