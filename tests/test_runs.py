"""A finished run is never deleted by the next one: folders of their own by default, refusals
(exit 2) for a named folder that holds one, --overwrite to replace it, resuming kept."""

import hashlib
import os
import subprocess
import sys

import pytest

from bonefrac import compare, errors, train_lib, workdir
from test_train import DATASET, SIZE, Crash, EpochsSeen, tiny_config


def snapshot(folder):
  """{relative path: sha256} of every file under `folder`."""
  found = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return found


def test_a_second_run_into_a_finished_workdir_is_refused_and_touches_nothing(cnn_run, small_data_dir):
  folder, _ = cnn_run
  before = snapshot(folder)
  result = subprocess.run(
      [sys.executable, "-m", "bonefrac.train", f"--dataset={DATASET}", f"--data_dir={small_data_dir}",
       f"--workdir={folder}", "--epochs=1", f"--image_size={SIZE}", "--dense_units=16"],
      capture_output=True, text=True, timeout=300,
      env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (  # our one line, after TensorFlow's start-up
      f"error: --workdir={folder} holds an earlier run (its report.json); choose another --workdir "
      "(or none: each run gets a folder of its own under runs/), or pass --overwrite to replace it")
  assert "Traceback" not in result.stderr
  assert snapshot(folder) == before  # byte for byte


def test_overwrite_replaces_the_earlier_run_and_says_so(small_data_dir, tmp_path, capsys):
  train_lib.train(tiny_config(small_data_dir, tmp_path))
  stale = tmp_path / "predictions_validation.csv"  # an output this second run will not write
  stale.write_text("stale")
  report = train_lib.train(tiny_config(small_data_dir, tmp_path, dense_units=(8,), overwrite=True))
  assert f"--overwrite: replacing the earlier run in {tmp_path}" in capsys.readouterr().out
  assert report["config"]["dense_units"] == [8] and not stale.exists()


def test_runs_get_folders_of_their_own_and_an_interrupted_one_resumes(small_data_dir, tmp_path,
                                                                      monkeypatch):
  monkeypatch.chdir(tmp_path)
  first = train_lib.train(tiny_config(small_data_dir, None))
  with pytest.raises(RuntimeError, match="killed"):  # the second stops after its first epoch
    train_lib.train(tiny_config(small_data_dir, None, epochs=2), extra_callbacks=[Crash()])
  runs = sorted(os.listdir("runs"))
  assert len(runs) == 3 and runs[-1] == "latest" and runs[0].startswith("cnn-")  # kept apart
  second = os.path.join("runs", runs[1])
  assert workdir.latest_run() == second and os.path.exists(os.path.join("runs", runs[0], "report.json"))
  seen = EpochsSeen()
  resumed = train_lib.train(tiny_config(small_data_dir, None, epochs=2), extra_callbacks=[seen])
  assert seen.epochs == [1] and resumed["epochs_run"] == 2  # in the second's folder, as started
  assert sorted(os.listdir("runs")) == runs and first["model"] == "cnn"
  with pytest.raises(RuntimeError, match="killed"):
    train_lib.train(tiny_config(small_data_dir, None, epochs=2), extra_callbacks=[Crash()])
  stopped = workdir.latest_run()
  train_lib.train(tiny_config(small_data_dir, None, overwrite=True))  # afresh: a folder of its own
  assert workdir.latest_run() != stopped and os.path.isdir(os.path.join(stopped, "backup"))


def test_multi_worker_runs_name_their_shared_folder():
  with pytest.raises(errors.UserError, match="multi_worker_mirrored needs --workdir"):
    train_lib.choose_workdir(train_lib.TrainConfig(strategy="multi_worker_mirrored"))


def test_compare_refuses_to_replace_an_earlier_comparison(tmp_path, capsys):
  folders = [str(tmp_path / "cnn"), str(tmp_path / "vgg16")]
  outputs = [str(tmp_path / "comparison.json"), str(tmp_path / "comparison.md")]
  compare.check_nothing_replaced(folders, outputs, overwrite=False)  # nothing there yet
  os.makedirs(tmp_path / "cnn" / "backup")  # an interrupted run: it will resume
  (tmp_path / "cnn" / "training_log.csv").write_text("epoch\n0\n")
  compare.check_nothing_replaced(folders, outputs, overwrite=False)
  (tmp_path / "comparison.md").write_text("earlier")
  with pytest.raises(errors.UserError, match="comparison.md hold an earlier comparison"):
    compare.check_nothing_replaced(folders, outputs, overwrite=False)
  (tmp_path / "vgg16").mkdir()
  (tmp_path / "vgg16" / "report.json").write_text("{}")  # a finished run
  with pytest.raises(errors.UserError, match="vgg16 hold an earlier comparison"):
    compare.check_nothing_replaced(folders, outputs[:1], overwrite=False)
  compare.check_nothing_replaced(folders, outputs, overwrite=True)
  assert "--overwrite: replacing" in capsys.readouterr().out
  assert (tmp_path / "comparison.md").read_text() == "earlier"  # replaced only when written
