"""`python -m bonefrac.train`: train, evaluate and export one model (see `train_lib`)."""

import dataclasses
import json

from absl import flags

from bonefrac import cli, distribute, models, train_lib

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
flags.DEFINE_string("workdir", "runs/bonefrac", "Where logs, checkpoints, report and exports go.")
flags.DEFINE_integer("epochs", 12, "Maximum epochs (early stopping may end sooner).", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Global batch size, split evenly over the replicas.")
flags.DEFINE_integer("image_size", 224, "Side of the square input images.", lower_bound=32)
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", lower_bound=0.0)
flags.DEFINE_float("dropout", 0.3, "Dropout rate of the dense head.", lower_bound=0.0, upper_bound=0.95)
flags.DEFINE_list("dense_units", ["256", "128"], "Widths of the dense head's layers.")
flags.DEFINE_bool("augment", True, "Device-side augmentation while training.")
flags.DEFINE_string("vgg16_weights", "imagenet", "imagenet (downloaded and cached by Keras), "
                    "none (train from scratch) or the path of a local .h5 file.")
flags.DEFINE_integer("fine_tune_epochs", 0, "VGG16: epochs with the top conv block unfrozen "
                     "after the head is trained.", lower_bound=0)
flags.DEFINE_float("fine_tune_learning_rate", 1e-5, "Learning rate of the fine-tuning phase.")
flags.DEFINE_integer("cpu_replicas", 1, "Split the CPU into N logical devices so that mirrored "
                     "runs N replicas without GPUs.", lower_bound=1)
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
flags.DEFINE_integer("patience", None, "Early-stopping patience (default 5 for cnn, 3 for vgg16).")
flags.DEFINE_bool("balance_classes", False, "Weight examples so that both classes weigh the same.")
flags.DEFINE_bool("keep_aspect", False, "Pad to a square instead of stretching.")
flags.DEFINE_string("hparams", None, "JSON file of hyper-parameters (from bonefrac.tune) that "
                    "override dropout, dense_units and learning_rate.")
flags.DEFINE_integer("seed", 0, "Seed of weights, shuffling and augmentation.")
flags.DEFINE_integer("verbose", 1, "Keras fit verbosity: 1 progress bar, 2 a line per epoch.")


def config_from_flags():
  """The `TrainConfig` the flags describe (`--hparams` applied on top)."""
  try:
    dense_units = tuple(int(u) for u in FLAGS.dense_units)
  except ValueError:
    raise cli.UserError(f"--dense_units={','.join(FLAGS.dense_units)}: give integers, e.g. 256,128")
  names = [f.name for f in dataclasses.fields(train_lib.TrainConfig)]
  values = {name: getattr(FLAGS, name) for name in names if name in FLAGS and name != "dense_units"}
  config = train_lib.TrainConfig(**values, dense_units=dense_units)
  if FLAGS.hparams:
    config = apply_hparams(config, FLAGS.hparams)
  return config


def apply_hparams(config, path: str):
  """Overrides the head's hyper-parameters (and the learning rate) from a tuner's JSON file."""
  try:
    with open(path) as f:
      hparams = json.load(f)
  except (OSError, ValueError) as e:
    raise cli.UserError(f"--hparams={path}: cannot read it as JSON ({e})") from None
  updates = {k: hparams[k] for k in ("dropout", "learning_rate") if k in hparams}
  if "dense_units" in hparams:
    updates["dense_units"] = tuple(int(u) for u in hparams["dense_units"])
  return dataclasses.replace(config, **updates)


def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
  distribute.split_cpu(FLAGS.cpu_replicas)  # before TensorFlow creates its devices
  result = train_lib.train(config_from_flags())
  print(json.dumps({k: result[k] for k in ("model", "split", "n", "accuracy", "sensitivity",
                                           "specificity", "f1", "auc", "epochs_run")}))


if __name__ == "__main__":
  cli.run(main)
