"""bonefrac.tune on tiny data: trials, HParams events, resuming, replicas, chief/worker, errors."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import keras_tuner
import pytest
from tensorboard.backend.event_processing import event_accumulator

from bonefrac import errors, train_lib, tune_lib

DATASET = "bone_fracture/synthetic_small"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
sys.path.insert(0, os.path.join(ROOT, "launch"))
import local_procs  # noqa: E402


def tiny_flags(data_dir, workdir, *flags):
  return [f"--dataset={DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}",
          "--image_size=32", "--batch_size=8", "--tuner=random", "--max_epochs=1", "--verbose=2",
          *flags]


def run_tune(*flags, timeout=300):
  return subprocess.run([sys.executable, "-m", "bonefrac.tune", *flags], capture_output=True,
                        text=True, timeout=timeout, env=ENV)


def completed_trials(workdir):
  trials = []
  search = os.path.join(workdir, tune_lib.PROJECT)
  for name in sorted(os.listdir(search)):
    path = os.path.join(search, name, "trial.json")
    if name.startswith("trial_") and os.path.exists(path):
      with open(path) as f:
        trial = json.load(f)
      if trial["status"] == "COMPLETED":
        trials.append(trial)
  return trials


@pytest.fixture(scope="module")
def search(small_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("tune")
  config = train_lib.TrainConfig(dataset=DATASET, data_dir=small_data_dir, workdir=str(workdir),
                                 image_size=32, batch_size=8, verbose=0)
  best = tune_lib.search(config, tune_lib.SearchConfig(tuner="random", max_trials=2, max_epochs=1))
  return workdir, best


def test_a_search_writes_the_best_hparams_and_a_trial_table(search):
  workdir, best = search
  assert json.loads((workdir / "best_hparams.json").read_text()) == best
  assert best["model"] == "cnn" and best["objective"] == "val_auc"
  assert 0.0 <= best["dropout"] <= 0.6 and 1 <= len(best["dense_units"]) <= 3
  rows = (workdir / "trials.csv").read_text().splitlines()
  assert rows[0].startswith("trial,status,dropout,dense_units,val_auc") and len(rows) == 3
  assert len(completed_trials(workdir)) == 2
  assert (workdir / "trials.md").read_text().count("COMPLETED") == 2


def _tensor_tags(path):
  acc = event_accumulator.EventAccumulator(str(path), size_guidance={"tensors": 0})
  acc.Reload()
  return set(acc.Tags()["tensors"])


def test_every_trial_has_its_hparams_and_metrics_on_tensorboard(search):
  workdir, _ = search
  logs = workdir / "logs"
  assert "_hparams_/experiment" in _tensor_tags(logs)  # the search's domains and metrics
  trial_ids = [t["trial_id"] for t in completed_trials(workdir)]
  for trial_id in trial_ids:
    session = logs / trial_id / "execution0"
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= _tensor_tags(session)
    assert "epoch_auc" in _tensor_tags(session / "validation")


def test_best_hparams_feed_bonefrac_train(search, small_data_dir, tmp_path):
  workdir, best = search
  result = subprocess.run(
      [sys.executable, "-m", "bonefrac.train", f"--hparams={workdir / 'best_hparams.json'}",
       f"--dataset={DATASET}", f"--data_dir={small_data_dir}", f"--workdir={tmp_path}",
       "--epochs=1", "--image_size=32", "--batch_size=8", "--verbose=2"],
      capture_output=True, text=True, timeout=300, env=ENV)
  assert result.returncode == 0, result.stderr[-2000:]
  config = json.loads((tmp_path / "report.json").read_text())["config"]
  assert config["dropout"] == best["dropout"] and config["dense_units"] == best["dense_units"]


def test_an_interrupted_search_runs_only_the_rest(small_data_dir, tmp_path):
  flags = tiny_flags(small_data_dir, tmp_path, "--max_trials=3")
  proc = subprocess.Popen([sys.executable, "-m", "bonefrac.tune", *flags], env=ENV,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  second = tmp_path / tune_lib.PROJECT / "trial_1" / "trial.json"
  deadline = time.time() + 240
  while not second.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)  # during the second trial: the first one is finished
  proc.wait()
  first = completed_trials(tmp_path)
  assert [t["trial_id"] for t in first] == ["0"]
  result = run_tune(*flags)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.count(" Complete [") == 2  # KerasTuner's line at the end of each trial
  after = completed_trials(tmp_path)
  assert [t["trial_id"] for t in after] == ["0", "1", "2"]
  assert after[0] == first[0]  # the finished trial was not run again


def test_trials_train_under_mirrored_with_two_cpu_replicas(small_data_dir, tmp_path):
  result = run_tune(*tiny_flags(small_data_dir, tmp_path, "--max_trials=1", "--strategy=mirrored",
                                "--cpu_replicas=2"))
  assert result.returncode == 0, result.stderr[-2000:]
  assert "under MirroredStrategy (2 replica(s))" in result.stdout
  assert len(completed_trials(tmp_path)) == 1


def test_a_chief_and_one_worker_share_a_search(small_data_dir, tmp_path):
  stale = tmp_path / tune_lib.PROJECT / "trial_9" / "trial.json"  # an earlier search's
  stale.parent.mkdir(parents=True)
  stale.write_text("{}")
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", "tune_local.py"), "--workers=1", "--",
       *tiny_flags(small_data_dir, tmp_path, "--max_trials=2", "--overwrite")],
      capture_output=True, text=True, timeout=300, env=ENV)
  assert result.returncode == 0, result.stdout[-3000:]
  assert not stale.exists()
  assert "chief: exit status 0" in result.stdout and "tuner0: exit status 0" in result.stdout
  assert "[tuner0] Building cnn" in result.stdout  # the worker trains ...
  assert "[chief] | trial | status" in result.stdout  # ... the chief reports
  assert len(completed_trials(tmp_path)) == 2
  assert (tmp_path / "best_hparams.json").exists()


def test_user_errors_exit_2_with_one_line(small_data_dir, tmp_path):
  result = run_tune(*tiny_flags(small_data_dir, tmp_path, "--objective=val_f2"))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: --objective=val_f2 is not")
  assert "Traceback" not in result.stderr


def test_a_search_continued_with_other_settings_is_refused(tmp_path):
  settings = {"tuner": "random", "image_size": 32}
  tune_lib.check_workdir(str(tmp_path), settings, overwrite=False)
  tune_lib.check_workdir(str(tmp_path), settings, overwrite=False)  # the same: continue
  with pytest.raises(errors.UserError, match="tuner=random .now hyperband.*--overwrite"):
    tune_lib.check_workdir(str(tmp_path), {**settings, "tuner": "hyperband"}, overwrite=False)
  tune_lib.check_workdir(str(tmp_path), {**settings, "tuner": "hyperband"}, overwrite=True)


def test_only_the_chief_clears_the_workdir_and_workers_wait_for_it(tmp_path, monkeypatch):
  port = local_procs.free_port()
  earlier = tmp_path / tune_lib.PROJECT / "trial_0" / "trial.json"
  earlier.parent.mkdir(parents=True)
  earlier.write_text("{}")
  monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
  monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
  monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")  # a worker
  chief_oracle = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
  chief_oracle.add_insecure_port(f"127.0.0.1:{port}")
  start = time.monotonic()
  chief_starts = threading.Timer(1.0, chief_oracle.start)
  chief_starts.start()
  try:
    assert tune_lib.claim_workdir(str(tmp_path), {"tuner": "random"}, overwrite=True) is False
    waited = time.monotonic() - start
  finally:
    chief_starts.cancel()
    chief_oracle.stop(None)
  assert waited >= 0.9  # until the chief's oracle answered
  assert earlier.exists() and not (tmp_path / "search_settings.json").exists()  # untouched
  monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
  assert tune_lib.claim_workdir(str(tmp_path), {"tuner": "random"}, overwrite=True) is True
  assert not earlier.exists() and (tmp_path / "search_settings.json").exists()


def test_multi_worker_mirrored_is_refused_inside_a_tuner(tmp_path):
  config = train_lib.TrainConfig(strategy="multi_worker_mirrored", workdir=str(tmp_path))
  with pytest.raises(errors.UserError, match="chief/worker"):
    tune_lib.search(config, tune_lib.SearchConfig())


def test_the_space_holds_dropout_and_one_to_three_dense_layers():
  hp = keras_tuner.HyperParameters()
  values = tune_lib.sample_head(hp, tune_learning_rate=True)
  assert set(hp.values) == {"dropout", "dense_layers", "units_0", "units_1", "units_2",
                            "learning_rate"}
  assert tune_lib.head_values(hp.values) == {**values, "dense_units": list(values["dense_units"])}
  assert tune_lib.objective("val_loss").direction == "min"
  assert tune_lib.objective("val_auc").direction == "max"
