"""TensorBoard beyond Keras' scalars: augmented-image grids, confusion matrices, PR curves, hparams."""

import os
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.pr_curve import summary as pr_summary

from bonefrac import plots

# The confusion counts at 0.5, compiled into the model as metrics of these names.
CONFUSION_METRICS = {"tn": keras.metrics.TrueNegatives, "fp": keras.metrics.FalsePositives,
                     "fn": keras.metrics.FalseNegatives, "tp": keras.metrics.TruePositives}


def image_grid(images: np.ndarray, columns: int = 4) -> np.ndarray:
  """[n, h, w, c] 0-255 -> one [1, rows*h, columns*w, c] uint8 tiled image."""
  images = np.clip(np.asarray(images), 0, 255).astype(np.uint8)
  n, h, w, c = images.shape
  rows = -(-n // columns)
  grid = np.zeros((rows * h, columns * w, c), np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
  return grid[None]


def write_hparams(logdir: str, hparams: Mapping, run_name: str) -> None:
  """The run's hyper-parameters for TensorBoard's HParams dashboard (one session per run)."""
  values = {k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
            for k, v in hparams.items() if v is not None}
  with tf.summary.create_file_writer(logdir).as_default():
    hparams_api.hparams(values, trial_id=run_name)


def write_png(logdir: str, tag: str, png: bytes, step: int) -> None:
  """A rendered figure (`plots.to_png`) as a TensorBoard image."""
  with tf.summary.create_file_writer(logdir).as_default():
    tf.summary.image(tag, tf.image.decode_png(png, channels=3)[None], step=step)


def write_pr_curve(logdir: str, labels, probabilities, step: int, name: str = "test") -> None:
  """A precision-recall curve of the final evaluation (TensorBoard's PR Curves plugin)."""
  summary = pr_summary.pb(name, labels=np.asarray(labels, bool),
                          predictions=np.asarray(probabilities, np.float32), num_thresholds=201,
                          display_name=f"{name} precision-recall")
  with tf.summary.create_file_writer(logdir).as_default():
    tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)


class AugmentedImages(keras.callbacks.Callback):
  """Writes a grid of training images as the model sees them after augmentation, once."""

  def __init__(self, logdir: str, images: np.ndarray):
    super().__init__()
    self.logdir, self.images = logdir, images

  def on_train_begin(self, logs=None):
    preprocessing = self.model.get_layer("preprocessing")
    x = keras.ops.cast(self.images, "float32")
    try:
      x = preprocessing.get_layer("augmentation")(x, training=True)
    except ValueError:  # built without augmentation: show the inputs
      pass
    grid = image_grid(keras.ops.convert_to_numpy(x))
    with tf.summary.create_file_writer(os.path.join(self.logdir, "train")).as_default():
      tf.summary.image("augmented_training_images", grid, step=0,
                       description="What the model trains on (0-255 before normalisation).")


class ConfusionMatrixImages(keras.callbacks.Callback):
  """A confusion-matrix image of the validation split per epoch, from the tn/fp/fn/tp metrics."""

  def __init__(self, logdir: str):
    super().__init__()
    self.writer = tf.summary.create_file_writer(os.path.join(logdir, "validation"))

  def on_epoch_end(self, epoch, logs=None):
    counts = [(logs or {}).get(f"val_{name}") for name in CONFUSION_METRICS]
    if None in counts:
      return
    tn, fp, fn, tp = (int(round(float(c))) for c in counts)
    png = plots.to_png(plots.confusion_matrix_figure([[tn, fp], [fn, tp]],
                                                     title=f"Validation, epoch {epoch + 1}"))
    with self.writer.as_default():
      tf.summary.image("confusion_matrix", tf.image.decode_png(png, channels=3)[None], step=epoch)
    self.writer.flush()
