"""The absl flags that `bonefrac.train` and `bonefrac.tune` share, and the TrainConfig they give."""

import dataclasses
from typing import Optional, Tuple

from absl import flags

from bonefrac import distribute, errors, models, train_lib

FLAGS = flags.FLAGS

flags.DEFINE_enum("model", "cnn", list(models.MODELS), "Which model: the custom CNN or VGG16 transfer.")
flags.DEFINE_enum("strategy", "auto", list(distribute.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_enum("precision", "auto", list(distribute.PRECISIONS),
                  "Keras dtype policy; auto measures-based choice per device (BUILD_NOTES.md).")
flags.DEFINE_enum("all_reduce", "auto", list(distribute.ALL_REDUCE),
                  "Collective for multi_worker_mirrored: ring on CPUs, nccl on GPUs by default.")
flags.DEFINE_string("dataset", "bone_fracture/synthetic", "TFDS dataset name/config.")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default: TFDS's, ~/tensorflow_datasets).")
flags.DEFINE_string("manual_dir", None, "Kaggle download, to build bone_fracture/kaggle on first use.")
flags.DEFINE_integer("batch_size", 16, "Global batch size, split evenly over the replicas.")
flags.DEFINE_integer("image_size", 224, "Side of the square input images.", lower_bound=32)
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", lower_bound=0.0)
flags.DEFINE_bool("augment", True, "Device-side augmentation while training.")
flags.DEFINE_string("vgg16_weights", "imagenet", "imagenet (downloaded and cached by Keras), "
                    "none (train from scratch) or the path of a local .h5 file.")
flags.DEFINE_integer("cpu_replicas", 1, "Split the CPU into N logical devices so that mirrored "
                     "runs N replicas without GPUs.", lower_bound=1)
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
flags.DEFINE_bool("balance_classes", False, "Weight examples so that both classes weigh the same.")
flags.DEFINE_bool("keep_aspect", False, "Pad to a square instead of stretching.")
flags.DEFINE_integer("seed", 0, "Seed of weights, shuffling and augmentation.")
flags.DEFINE_integer("verbose", 1, "Keras fit verbosity: 1 progress bar, 2 a line per epoch.")
flags.DEFINE_string("profile_batches", None, "START,END: trace these training steps (counted from "
                    "1) with TensorFlow's profiler into the TensorBoard logs (the Profile tab).")


def train_config(**overrides) -> train_lib.TrainConfig:
  """The `TrainConfig` of every defined flag that names one of its fields, then `overrides`."""
  names = [f.name for f in dataclasses.fields(train_lib.TrainConfig)]
  values = {name: getattr(FLAGS, name) for name in names if name in FLAGS}
  values["profile_batches"] = profile_batches(FLAGS.profile_batches)
  return train_lib.TrainConfig(**{**values, **overrides})


def profile_batches(text: Optional[str]) -> Optional[Tuple[int, int]]:
  """"START,END" (or one step) -> (START, END); None for none. Bad values: UserError."""
  if not text:
    return None
  try:
    steps = [int(part) for part in text.split(",")]
  except ValueError:
    steps = []
  if len(steps) not in (1, 2) or steps[0] < 1 or steps[-1] < steps[0]:
    raise errors.UserError(f"--profile_batches={text}: give START,END with 1 <= START <= END, "
                           "e.g. 10,15 (training steps, counted from 1)")
  return steps[0], steps[-1]
