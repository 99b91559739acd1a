"""The Slurm launchers on a real one-node Slurm cluster: `sbatch launch/slurm.sbatch` over two
tasks, scancel and a resubmission that resumes, and `srun launch/tune_cluster.sh`.

Run them alone with `python -m pytest -m slurm` (as root, with slurm-wlm and munge installed).
"""

import json
import os
import re
import socket
import sys
import time

import pytest

import slurm_cluster

pytestmark = pytest.mark.slurm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SBATCH = os.path.join(ROOT, "launch", "slurm.sbatch")
TUNE = os.path.join(ROOT, "launch", "tune_cluster.sh")
DATASET = "bone_fracture/synthetic_small"
# Two CPU tasks on the one node: the GPU request and node count of the script, overridden.
ON_CPUS = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  reason = slurm_cluster.why_unavailable()
  if reason:
    pytest.skip(reason)
  local = slurm_cluster.LocalSlurm(str(tmp_path_factory.mktemp("slurm"))).start()
  yield local
  local.stop()


def job_env(**extra):
  """What the jobs see: this Python first on PATH (sbatch exports the environment), no GPU,
  and ports of their own."""
  port = free_port_pair()
  return {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
          "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
          "BONEFRAC_SLURM_PORT_BASE": str(port), **extra}


def free_port_pair() -> int:
  """A port p with p and p + 1 free: the two tasks of the node listen on them."""
  while True:
    port = slurm_cluster.free_port()
    try:
      with socket.socket() as s:
        s.bind(("127.0.0.1", port + 1))
      return port
    except OSError:
      continue


def train_flags(data_dir, workdir, *extra):
  return [f"--dataset={DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}",
          "--image_size=32", "--batch_size=8", "--dense_units=16", "--dropout=0", "--noaugment",
          "--verbose=2", *extra]


def sbatch(cluster, tmp_path, flags, wait=True):
  """Submits launch/slurm.sbatch on two CPU tasks; (job id, its output file)."""
  output = tmp_path / "job-%j.out"
  result = cluster.run(["sbatch", "--parsable", *(["--wait"] if wait else []), *ON_CPUS,
                        f"--output={output}", f"--chdir={tmp_path}", SBATCH, *flags],
                       check=False, timeout=300, env=job_env())
  job_id = result.stdout.strip().split(";")[0]
  assert job_id.isdigit(), result.stderr
  return job_id, result.returncode, tmp_path / f"job-{job_id}.out"


def test_sbatch_trains_one_model_over_two_tasks(cluster, small_data_dir, tmp_path):
  job_id, status, output = sbatch(cluster, tmp_path,
                                  train_flags(small_data_dir, tmp_path / "run", "--epochs=1"))
  text = output.read_text()
  assert status == 0, text[-3000:]  # srun (hence the job) fails when either task does
  assert "0: Training cnn" in text and "2 replica(s) under CollectiveAllReduceStrategy" in text
  prints = dict(re.findall(r"^(\d): Final weights fingerprint: (\w+)$", text, re.M))
  assert set(prints) == {"0", "1"} and prints["0"] == prints["1"]
  report = json.loads((tmp_path / "run" / "report.json").read_text())  # the chief's
  assert report["replicas"] == 2 and report["strategy"] == "CollectiveAllReduceStrategy"
  assert re.search(r'^1: \{"model": "cnn", "chief": false\}$', text, re.M)


def test_scancel_then_a_resubmission_resumes_after_the_last_epoch(cluster, small_data_dir, tmp_path):
  epochs = 12  # tiny epochs take a fraction of a second: enough of them to cancel in the middle
  flags = train_flags(small_data_dir, tmp_path / "run", f"--epochs={epochs}")
  job_id, _, first_output = sbatch(cluster, tmp_path, flags, wait=False)
  metadata = tmp_path / "run" / "backup" / "training_metadata.json"
  deadline = time.time() + 240
  while not metadata.exists() and time.time() < deadline:
    time.sleep(0.05)
  cluster.run(["scancel", job_id])
  cluster.wait_until_gone(job_id)
  assert re.search(r"CANCELLED AT", first_output.read_text()), first_output.read_text()[-2000:]
  assert metadata.exists(), "the job ended before scancel"  # BackupAndRestore deletes it at the end
  finished = json.loads(metadata.read_text())["epoch"]  # epochs finished (as test_multi_worker)
  assert 1 <= finished < epochs
  _, status, output = sbatch(cluster, tmp_path, flags)
  text = output.read_text()
  assert status == 0, text[-3000:]
  for task in ("0", "1"):
    started = re.findall(rf"^{task}: Epoch (\d+)/{epochs}$", text, re.M)
    assert started and started[0] == str(finished + 1), (task, finished, started)  # none starts over


def test_srun_runs_a_search_with_a_chief_and_a_worker(cluster, small_data_dir, tmp_path):
  flags = [f"--dataset={DATASET}", f"--data_dir={small_data_dir}", f"--workdir={tmp_path}",
           "--image_size=32", "--batch_size=8", "--tuner=random", "--max_epochs=1",
           "--max_trials=2", "--verbose=2"]
  result = cluster.run(["srun", "--label", "--nodes=1", "--ntasks=2", TUNE, *flags], check=False,
                       timeout=300, env=job_env(ORACLE_PORT=str(slurm_cluster.free_port())))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
  assert re.search(r"^1: Building cnn", result.stdout, re.M)  # task 1, the worker, trains ...
  assert re.search(r"^0: \| trial \| status", result.stdout, re.M)  # ... task 0, the chief, reports
  assert (tmp_path / "best_hparams.json").exists()
