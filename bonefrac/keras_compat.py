"""A version-checked fix for Keras 3's `fit` under MultiWorkerMirroredStrategy (keras#20585).

In Keras 3.0-3.15 with the TensorFlow backend, `model.fit` across several workers fails twice:

1. before the first step, `_maybe_symbolic_build` reduces a whole input batch across workers,
   eagerly, only to read its shapes: "Attempt to convert a value (PerReplica...)";
2. every step, `reduce_per_replica` averages the (scalar) metric results with
   `strategy.reduce("MEAN", v, axis=0)`: "Invalid reduction dimension 0 for input with 0
   dimensions".

`apply()` replaces those two functions for that case only (multi-worker
MultiWorkerMirroredStrategy); every other strategy goes through Keras' own code unchanged.
Set BONEFRAC_KERAS_FIX=0 to see whether a Keras version still needs it.
"""

import os

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

AFFECTED = ((3, 0), (3, 15))  # first and last Keras major.minor seen to fail (see BUILD_NOTES.md)
_ORIGINALS = {}


def needed(version: str = keras.__version__) -> bool:
  """True for the Keras versions known to fail (and when not turned off by the environment)."""
  if os.environ.get("BONEFRAC_KERAS_FIX", "1") == "0":
    return False
  major_minor = tuple(int(part) for part in version.split(".")[:2])
  return AFFECTED[0] <= major_minor <= AFFECTED[1]


def apply() -> bool:
  """Installs the fix when this Keras needs it; returns whether it is installed."""
  if _ORIGINALS:
    return True
  if not needed():
    return False
  _ORIGINALS["reduce_per_replica"] = tf_trainer.reduce_per_replica
  _ORIGINALS["_maybe_symbolic_build"] = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
  tf_trainer.reduce_per_replica = _reduce_per_replica
  tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
  return True


def remove() -> None:
  """Puts Keras' own functions back."""
  if _ORIGINALS:
    tf_trainer.reduce_per_replica = _ORIGINALS.pop("reduce_per_replica")
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _ORIGINALS.pop("_maybe_symbolic_build")


def is_multi_worker(strategy) -> bool:
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          and strategy.extended._in_multi_worker_mode())


def _reduce_per_replica(values, strategy, reduction):
  if is_multi_worker(strategy) and reduction in ("auto", "mean"):
    # Element-wise mean over all replicas of all workers: right for scalars and tensors alike.
    return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
  return _ORIGINALS["reduce_per_replica"](values, strategy, reduction)


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
  strategy = self._distribute_strategy
  if iterator is not None and strategy is not None and is_multi_worker(strategy):
    for _, _, batches in iterator:
      # The batch only gives the model its input shapes: this worker's first replica's
      # share has them, and reading it needs no collective.
      data_batch = keras.tree.map_structure(
          lambda v: strategy.experimental_local_results(v)[0]
          if isinstance(v, tf.distribute.DistributedValues) else v, next(batches))
      break
    iterator = None
  return _ORIGINALS["_maybe_symbolic_build"](self, iterator=iterator, data_batch=data_batch)
