"""The Keras callbacks of a training run: resume, early stopping, best checkpoint, logs, speed."""

import json
import os
import statistics
import time
from typing import List, Optional, Tuple

import keras
import numpy as np

from bonefrac import summaries, workdir

PATIENCE = {"cnn": 5, "vgg16": 3}  # the original's early-stopping patience
# Epochs before early stopping watches: the CNN creeps for a few epochs before it finds the
# break (BUILD_NOTES.md, "The custom CNN's recipe").
EARLY_STOPPING_START = {"cnn": 5, "vgg16": 0}
MONITOR = "val_selection"  # what the checkpoint and early stopping watch: see SelectionScore


def selection_score(val_auc: float, val_loss: float) -> float:
  """Validation AUC to three decimals, then the lower validation loss: steps of 0.001 in AUC
  outweigh the loss term (at most 1e-4), so the loss only breaks ties."""
  return round(float(val_auc), 3) - 1e-4 * min(float(val_loss), 1.0)


class SelectionScore(keras.callbacks.Callback):
  """Adds `val_selection` (`selection_score`) to each epoch's logs, for the callbacks after it.

  Not validation AUC alone: it saturates, and epochs tied on it can differ widely in
  calibration (BUILD_NOTES.md, "Training decisions").
  """

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None and "val_auc" in logs and "val_loss" in logs:
      logs[MONITOR] = selection_score(logs["val_auc"], logs["val_loss"])


class Throughput(keras.callbacks.Callback):
  """Training images/s per epoch (validation excluded), added to the logs and TensorBoard."""

  def __init__(self, global_batch: int, steps: int):
    super().__init__()
    self.images = global_batch * steps
    self.per_epoch: List[float] = []
    self._start = self._end = None

  def on_epoch_begin(self, epoch, logs=None):
    self._start, self._end = time.perf_counter(), None

  def on_test_begin(self, logs=None):
    if self._start is not None and self._end is None:
      self._end = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    end = self._end or time.perf_counter()
    self.per_epoch.append(self.images / max(end - self._start, 1e-9))
    if logs is not None:
      logs["images_per_second"] = self.per_epoch[-1]

  def steady(self) -> Optional[float]:
    """Median over the epochs after the first (which traces the graph and fills the cache)."""
    rates = self.per_epoch[1:] or self.per_epoch
    return float(statistics.median(rates)) if rates else None


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
  """Keras' best-only checkpoint of the weights, which also writes the log row of the epoch it
  saved (`epoch` counted from 0) to `record`, so that the report names the epoch the weights
  are from. Keras compares the monitor in float32: a recount from training_log.csv in float64
  can name another epoch when two differ by less (one main job's did)."""

  def __init__(self, filepath: str, record: str, **kwargs):
    super().__init__(filepath, save_best_only=True, save_weights_only=True, **kwargs)
    self.record = record

  def on_epoch_end(self, epoch, logs=None):
    before = self.best
    super().on_epoch_end(epoch, logs)
    if self.best is not before:  # Keras keeps the value of the epoch it just saved
      with open(self.record, "w") as f:
        json.dump({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}, f)


class ProgressBar(keras.callbacks.ProgbarLogger):
  """Keras' progress bar (or line per epoch) without the raw confusion counts (tp, fp, tn, fn),
  which TensorBoard's confusion-matrix images and training_log.csv still get."""

  def on_train_batch_end(self, batch, logs=None):
    super().on_train_batch_end(batch, _shown(logs))

  def on_test_batch_end(self, batch, logs=None):
    super().on_test_batch_end(batch, _shown(logs))

  def on_epoch_end(self, epoch, logs=None):
    super().on_epoch_end(epoch, _shown(logs))

  def on_test_end(self, logs=None):
    super().on_test_end(_shown(logs))


def _shown(logs):
  hidden = {prefix + name for prefix in ("", "val_") for name in summaries.CONFUSION_METRICS}
  return None if logs is None else {k: v for k, v in logs.items() if k not in hidden}


class SharedBackupAndRestore(keras.callbacks.BackupAndRestore):
  """Keras' BackupAndRestore, restoring from `restore_from` (the chief's backup) and writing to
  `backup_dir` (a worker's own folder): with several workers, all resume from the chief's state
  and none writes over its files. With one process both are the same folder."""

  def __init__(self, backup_dir: str, restore_from: str):
    super().__init__(backup_dir)
    self.restore_from = restore_from

  def on_train_begin(self, logs=None):
    own = self._weights_path, self._training_metadata_path
    self._weights_path = os.path.join(self.restore_from, os.path.basename(own[0]))
    self._training_metadata_path = os.path.join(self.restore_from, os.path.basename(own[1]))
    try:
      super().on_train_begin(logs)
    finally:
      self._weights_path, self._training_metadata_path = own


def create_callbacks(model_name: str, paths: workdir.Paths, throughput: Throughput,
                     images: Optional[np.ndarray], backup: str, restore_from: str,
                     patience: Optional[int] = None, start: Optional[int] = None,
                     profile: Optional[Tuple[int, int]] = None) -> list:
  """The callbacks of one fit phase; `images` (optional) feed TensorBoard's augmentation grid;
  `profile` (first, last step) has TensorBoard trace those steps for its Profile tab.

  The checkpoint keeps the best epoch by MONITOR (validation AUC, ties broken by validation
  loss). Early stopping: `patience` epochs without a better one, counted from epoch `start`
  (None: the model's defaults, PATIENCE and EARLY_STOPPING_START).
  """
  patience = patience if patience is not None else PATIENCE[model_name]
  start = start if start is not None else EARLY_STOPPING_START[model_name]
  earlier = workdir.read_best_epoch(paths.resume.best_epoch)  # the best before a restart
  best_so_far = earlier[MONITOR] if earlier else None
  callbacks = [
      SharedBackupAndRestore(backup, restore_from),  # first: restores before the others start
      throughput,
      SelectionScore(),  # before the callbacks that read or log MONITOR
      keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=patience,
                                    start_from_epoch=start, restore_best_weights=True, verbose=1),
      # After a restart the checkpoint must still beat the best epoch before it.
      BestCheckpoint(paths.best, paths.best_epoch, monitor=MONITOR, mode="max",
                     initial_value_threshold=best_so_far),
      keras.callbacks.CSVLogger(paths.history, append=True),
      summaries.ConfusionMatrixImages(paths.logs),
      keras.callbacks.TensorBoard(paths.logs, write_graph=False, profile_batch=profile or 0),
      ProgressBar(),
  ]
  if images is not None:
    callbacks.append(summaries.AugmentedImages(paths.logs, images))
  return callbacks
