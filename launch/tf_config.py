"""Prints the TF_CONFIG of this worker, derived from its environment (Kubernetes indexed Jobs).

  export TF_CONFIG="$(python launch/tf_config.py)" && exec python -m bonefrac.train ...

An indexed Job gives each pod JOB_COMPLETION_INDEX and the hostname <job>-<index>; with the
pod template's `subdomain` set to a headless Service, <job>-<index>.<service> resolves to it.
Reads WORKERS (the Job's completions), JOB_NAME, SERVICE (default JOB_NAME) and PORT (2222).
Standard library only, so that it runs before anything else in the container.
"""

import json
import os
import sys


def tf_config(env) -> dict:
  """TF_CONFIG for worker JOB_COMPLETION_INDEX of WORKERS pods named JOB_NAME-<i>.SERVICE."""
  try:
    index, workers, job = int(env["JOB_COMPLETION_INDEX"]), int(env["WORKERS"]), env["JOB_NAME"]
  except (KeyError, ValueError) as e:
    raise SystemExit(f"error: {e} missing or not a number; set JOB_COMPLETION_INDEX (the indexed "
                     "Job does), WORKERS and JOB_NAME") from None
  service, port = env.get("SERVICE", job), env.get("PORT", "2222")
  hosts = [f"{job}-{i}.{service}:{port}" for i in range(workers)]
  return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


if __name__ == "__main__":
  print(json.dumps(tf_config(os.environ)))
  sys.exit(0)
