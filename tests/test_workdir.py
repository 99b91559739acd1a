"""A run's folder: the writability probe, the epoch log across restarts, resume settings."""

import os

import keras
import pytest

from bonefrac import callbacks, errors, workdir


def test_workers_probing_one_workdir_at_once_do_not_trip_over_each_other(tmp_path, monkeypatch):
  real_remove, interleaved = os.remove, []

  def remove_after_another_worker_probed(path):
    if not interleaved:  # another worker's whole probe, between our probe and its removal
      interleaved.append(path)
      workdir.prepare(str(tmp_path))
    real_remove(path)

  monkeypatch.setattr(workdir.os, "remove", remove_after_another_worker_probed)
  workdir.prepare(str(tmp_path))
  assert interleaved and not [n for n in os.listdir(tmp_path) if n.startswith(".writable")]


def _write_log(path, rows):
  path.write_text("epoch,val_auc,val_selection\n" + "".join(f"{e},{a},{s}\n" for e, a, s in rows))


def test_the_log_is_read_by_its_epoch_numbers(tmp_path):
  log = tmp_path / "training_log.csv"
  # Epoch 2 has no row (stopped between its backup and its row); epoch 1 was trained twice
  # (stopped between its row and its backup): its second row counts.
  _write_log(log, [(0, 0.6, 0.6), (1, 0.7, 0.7), (1, 0.75, 0.75), (3, 0.9, 0.9), (4, 0.8, 0.8)])
  assert [row["epoch"] for row in workdir.read_epochs(str(log))] == [0, 1, 3, 4]
  assert workdir.read_history(str(log))["val_auc"] == [0.6, 0.75, 0.9, 0.8]
  assert workdir.epochs_done(str(log)) == 5  # rows counted: 4
  assert workdir.epochs_done(str(tmp_path / "none")) == 0


def test_the_best_epoch_is_the_one_whose_weights_the_checkpoint_holds(tmp_path):
  inputs = keras.Input((2,))
  model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
  record = tmp_path / "best_epoch.json"
  checkpoint = callbacks.BestCheckpoint(str(tmp_path / "best.weights.h5"), str(record),
                                        monitor=callbacks.MONITOR, mode="max")
  checkpoint.set_model(model)
  # Epochs 6 and 11 differ by 3e-12, nothing in float32, in which Keras compares: it keeps 6,
  # where a float64 recount of the log (the report's old way) said 11.
  scores = {0: 0.5, 6: 0.9999985334085301, 9: 0.99, 11: 0.9999985367088579}
  for epoch, score in scores.items():
    model.layers[-1].bias.assign([float(epoch)])  # each epoch's weights, told apart
    checkpoint.on_epoch_end(epoch, {callbacks.MONITOR: score, "val_auc": 1.0})
  best = workdir.read_best_epoch(str(record))
  assert best["epoch"] == 6 and best[callbacks.MONITOR] == scores[6]
  model.load_weights(tmp_path / "best.weights.h5")
  assert float(model.layers[-1].bias.numpy()[0]) == 6.0  # the weights are epoch 6's too
  assert workdir.read_best_epoch(str(tmp_path / "none.json")) is None


def _interrupted(tmp_path, settings):
  paths = workdir.prepare(str(tmp_path))
  workdir.start_fresh_unless_resuming(paths, settings)
  os.makedirs(paths.backup)  # as BackupAndRestore leaves it after an epoch
  return paths


def test_an_interrupted_run_resumes_only_with_its_own_settings(tmp_path):
  paths = _interrupted(tmp_path, {"model": "cnn", "dense_units": (16,)})
  workdir.start_fresh_unless_resuming(paths, {"model": "cnn", "dense_units": (16,)})
  assert os.path.isdir(paths.backup)  # the same settings: resumed
  with pytest.raises(errors.UserError, match=r"holds an interrupted run with model=cnn "
                     r"\(now vgg16\); pass --overwrite .* or choose another --workdir"):
    workdir.start_fresh_unless_resuming(paths, {"model": "vgg16", "dense_units": (16,)})
  assert os.path.isdir(paths.backup)  # refused: nothing touched
  workdir.start_fresh_unless_resuming(paths, {"model": "vgg16", "dense_units": (16,)},
                                      overwrite=True)
  assert not os.path.exists(paths.backup)  # started afresh, with the new settings kept
