"""MultiWorkerMirroredStrategy across processes on 127.0.0.1, and the cluster derivations.

Run them alone with `python -m pytest -m multiworker`.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from bonefrac import distribute, keras_compat

pytestmark = pytest.mark.multiworker

DATASET = "bone_fracture/synthetic_small"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "launch")
sys.path.insert(0, LAUNCH)
import local_procs  # noqa: E402
import local_workers  # noqa: E402


def train_flags(data_dir, workdir, *extra):
  # No augmentation or dropout: the same examples give the same loss on any number of workers.
  return [f"--dataset={DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}",
          "--image_size=32", "--batch_size=8", "--dense_units=16", "--dropout=0", "--noaugment",
          "--verbose=2", *extra]


def environment(tmp_path, **extra):
  # TMPDIR: the workers' temporary folders land where the test can see that they are gone.
  return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
          "TMPDIR": str(tmp_path), **extra}


def launch_workers(tmp_path, flags, workers=2, **env):
  return subprocess.run([sys.executable, os.path.join(LAUNCH, "local_workers.py"),
                         f"--workers={workers}", "--", *flags], capture_output=True, text=True,
                        timeout=300, env=environment(tmp_path, **env))


def epoch_log(workdir):
  with open(os.path.join(workdir, "training_log.csv")) as f:
    return {key: float(value) for key, value in next(csv.DictReader(f)).items()}


def fingerprints(output):
  return dict(re.findall(r"\[(worker\d)\] Final weights fingerprint: (\w+)", output))


@pytest.fixture(scope="module")
def two_workers(small_data_dir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("mwm")
  result = launch_workers(tmp, train_flags(small_data_dir, tmp / "run", "--epochs=1",
                                           "--strategy=multi_worker_mirrored"))
  return tmp, result


def test_two_workers_train_and_end_with_the_same_weights(two_workers):
  tmp, result = two_workers
  assert result.returncode == 0, result.stdout[-3000:]
  assert "worker0: exit status 0" in result.stdout and "worker1: exit status 0" in result.stdout
  assert "2 replica(s) under CollectiveAllReduceStrategy" in result.stdout
  prints = fingerprints(result.stdout)
  assert set(prints) == {"worker0", "worker1"} and prints["worker0"] == prints["worker1"]


def test_only_the_chief_writes_and_the_others_clean_up(two_workers):
  tmp, _ = two_workers
  report = json.loads((tmp / "run" / "report.json").read_text())
  assert report["strategy"] == "CollectiveAllReduceStrategy" and report["replicas"] == 2
  assert (tmp / "run" / "logs" / "train").is_dir() and (tmp / "run" / "export").is_dir()
  assert not list(tmp.glob("bonefrac_worker_*"))  # worker 1's temporary outputs are gone


def test_the_loss_matches_one_process_with_the_same_global_batch(small_data_dir, tmp_path):
  # At learning rate 0 both runs keep the same initial weights, so the losses compare the
  # distributed forward pass and the averaging of the loss over workers. With no dropout
  # anywhere and batch norm synchronised over the workers (each worker's 20 images normalised
  # with the statistics of all 40, as in one process), the two must agree to rounding. Summing
  # instead of averaging over the workers would double both losses.
  flags = ["--epochs=1", "--learning_rate=0", "--batch_size=40", "--precision=float32",
           "--conv_dropout=0", "--sync_batch_norm"]
  workers = launch_workers(tmp_path, train_flags(small_data_dir, tmp_path / "mwm", *flags,
                                                 "--strategy=multi_worker_mirrored"))
  assert workers.returncode == 0, workers.stdout[-3000:]
  single = subprocess.run([sys.executable, "-m", "bonefrac.train",
                           *train_flags(small_data_dir, tmp_path / "single", *flags)],
                          capture_output=True, text=True, timeout=300, env=environment(tmp_path))
  assert single.returncode == 0, single.stderr[-2000:]
  distributed, alone = epoch_log(tmp_path / "mwm"), epoch_log(tmp_path / "single")
  assert distributed["loss"] == pytest.approx(alone["loss"], rel=1e-4)
  assert distributed["val_loss"] == pytest.approx(alone["val_loss"], rel=1e-4)


def test_a_killed_worker_and_a_restart_resume_at_the_next_epoch(small_data_dir, tmp_path):
  flags = train_flags(small_data_dir, tmp_path / "run", "--epochs=4",
                      "--strategy=multi_worker_mirrored")
  ports = [local_procs.free_port() for _ in range(2)]
  procs = [subprocess.Popen([sys.executable, "-m", "bonefrac.train", *flags],
                            env=environment(tmp_path, TF_CONFIG=local_workers.tf_config(ports, i)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
           for i in range(2)]
  metadata = tmp_path / "run" / "backup" / "training_metadata.json"
  deadline = time.time() + 240
  while not metadata.exists() and time.time() < deadline and procs[0].poll() is None:
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGKILL)  # a worker dies after the first epoch ...
  procs[0].send_signal(signal.SIGKILL)  # ... and the job goes down with it
  for proc in procs:
    proc.wait()
  finished = json.loads(metadata.read_text())["epoch"]
  assert 1 <= finished < 4
  result = launch_workers(tmp_path, flags)
  assert result.returncode == 0, result.stdout[-3000:]
  for worker in ("worker0", "worker1"):
    epochs = re.findall(rf"\[{worker}\] Epoch (\d+)/4", result.stdout)
    assert epochs[0] == str(finished + 1), (worker, epochs)  # both resume, none starts over
  with open(tmp_path / "run" / "training_log.csv") as f:
    assert [int(row["epoch"]) for row in csv.DictReader(f)][-1] == 3


def test_without_the_keras_fix_fit_fails_as_reported_upstream(small_data_dir, tmp_path):
  result = launch_workers(tmp_path, train_flags(small_data_dir, tmp_path / "run", "--epochs=1",
                                                "--strategy=multi_worker_mirrored"),
                          BONEFRAC_KERAS_FIX="0")
  assert result.returncode != 0
  assert "Attempt to convert a value (PerReplica" in result.stdout  # keras-team/keras#20585


def test_the_keras_fix_covers_every_keras_the_package_allows():
  # pyproject.toml caps Keras below the first version the fix skips, so that a newer Keras
  # that still has the bug is not installed with the fix silently off.
  with open(os.path.join(ROOT, "pyproject.toml")) as f:
    cap = re.search(r'"keras>=[\d.]+,<([\d.]+)"', f.read()).group(1)
  major, minor = (int(part) for part in cap.split(".")[:2])
  assert keras_compat.needed(f"{major}.{minor - 1}.9") and not keras_compat.needed(cap)
  assert keras_compat.needed("3.0.5") and not keras_compat.needed("2.15.0")


def test_the_slurm_derivation_for_a_3_worker_job(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  for key, value in {"SLURM_PROCID": "2", "SLURM_STEP_NUM_TASKS": "3",
                     "SLURM_STEP_NODELIST": "gpu[07-09]", "SLURM_STEP_TASKS_PER_NODE": "1(x3)"}.items():
    monkeypatch.setenv(key, value)
  resolver = distribute.slurm_cluster_resolver(gpus_per_node=0)
  assert resolver.cluster_spec().as_dict() == {"worker": ["gpu07:8888", "gpu08:8888", "gpu09:8888"]}
  assert (resolver.task_type, resolver.task_id) == ("worker", 2)
  monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2")  # two tasks on one node, another base
  monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
  monkeypatch.setenv("SLURM_STEP_NODELIST", "cpu01")
  monkeypatch.setenv("SLURM_PROCID", "1")
  monkeypatch.setenv(distribute.PORT_BASE_VARIABLE, "23456")
  assert distribute.slurm_cluster_resolver(gpus_per_node=0).cluster_spec().as_dict() == {
      "worker": ["cpu01:23456", "cpu01:23457"]}
  monkeypatch.setenv(distribute.PORT_BASE_VARIABLE, "high")
  with pytest.raises(ValueError, match="BONEFRAC_SLURM_PORT_BASE='high' is not a port number"):
    distribute.slurm_cluster_resolver(gpus_per_node=0)
  monkeypatch.setenv("TF_CONFIG", "{}")
  assert distribute.slurm_cluster_resolver(gpus_per_node=0) is None  # TF_CONFIG wins
