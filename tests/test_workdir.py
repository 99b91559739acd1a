"""A run's folder: the writability probe, the epoch log across restarts, resume settings."""

import os

import pytest

from bonefrac import errors, evaluate, workdir


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


def test_the_best_epoch_is_counted_by_the_epochs_own_numbers(tmp_path):
  log = tmp_path / "training_log.csv"
  # Epoch 2 has no row (stopped between its backup and its row); epoch 1 was trained twice
  # (stopped between its row and its backup): its second row counts.
  _write_log(log, [(0, 0.6, 0.6), (1, 0.7, 0.7), (1, 0.75, 0.75), (3, 0.9, 0.9), (4, 0.8, 0.8)])
  epochs = workdir.read_epochs(str(log))
  assert [row["epoch"] for row in epochs] == [0, 1, 3, 4]
  assert epochs[1]["val_auc"] == 0.75
  best = evaluate.best_epoch(epochs)
  assert int(best["epoch"]) + 1 == 4 and best["val_auc"] == 0.9  # rows counted: the 3rd
  assert workdir.epochs_done(str(log)) == 5
  assert workdir.read_history(str(log))["val_auc"] == [0.6, 0.75, 0.9, 0.8]
  assert evaluate.best_epoch([]) is None and workdir.epochs_done(str(tmp_path / "none")) == 0


def test_a_tie_keeps_the_first_best_epoch_as_the_checkpoint_does(tmp_path):
  log = tmp_path / "training_log.csv"
  _write_log(log, [(0, 0.6, 0.6), (1, 1.0, 0.999), (2, 1.0, 0.999)])
  assert evaluate.best_epoch(workdir.read_epochs(str(log)))["epoch"] == 1


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
