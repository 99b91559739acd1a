"""`python -m bonefrac.train`: train, evaluate and export one model (see `train_lib`)."""

import dataclasses
import json

from bonefrac import quiet

quiet.import_tensorflow()  # first: hides TensorFlow's C++ start-up lines

from absl import flags  # noqa: E402

from bonefrac import cli, common_flags, distribute, errors, report, tables, train_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common_flags)  # --helpshort lists the shared flags too

flags.DEFINE_string("workdir", None, "Where logs, checkpoints, report and exports go. Default: a "
                    "new folder runs/<model>-<date>-<time> (runs/latest points to it), or the "
                    "interrupted run runs/latest points to when it had the same settings. A "
                    "folder holding an earlier run is refused unless --overwrite.")
flags.DEFINE_integer("epochs", 15, "Maximum epochs (early stopping may end sooner).", lower_bound=1)
flags.DEFINE_float("dropout", 0.3, "Dropout rate of the dense head.", lower_bound=0.0, upper_bound=0.95)
flags.DEFINE_list("dense_units", ["256", "128"], "Widths of the dense head's layers.")
flags.DEFINE_integer("fine_tune_epochs", 0, "VGG16: epochs with the top conv block unfrozen "
                     "after the head is trained.", lower_bound=0)
flags.DEFINE_float("fine_tune_learning_rate", 1e-5, "Learning rate of the fine-tuning phase.")
flags.DEFINE_integer("patience", None, "Early-stopping patience (default 5 for cnn, 3 for vgg16).")
flags.DEFINE_integer("early_stopping_start", None, "Epoch from which early stopping watches "
                     "(default 5 for cnn, which creeps before it finds the break; 0 for vgg16).",
                     lower_bound=0)
flags.DEFINE_float("conv_dropout", 0.1, "The CNN's dropout after its second and third conv "
                   "blocks.", lower_bound=0.0, upper_bound=0.95)
flags.DEFINE_bool("sync_batch_norm", True, "Batch-norm statistics over the global batch, not "
                  "each replica's share: the same training whatever the number of replicas.")
flags.DEFINE_bool("overwrite", False, "Replace the earlier run in --workdir (finished, or "
                  "interrupted) instead of refusing or resuming.")
flags.DEFINE_bool("cache_features", False, "VGG16 with --noaugment: compute the frozen base's "
                  "outputs once and train the head on them (the same model, much faster epochs).")
flags.DEFINE_string("hparams", None, "JSON file of hyper-parameters (from bonefrac.tune) that "
                    "override dropout, dense_units and learning_rate.")


def config_from_flags():
  """The `TrainConfig` the flags describe (`--hparams` applied on top)."""
  try:
    dense_units = tuple(int(u) for u in FLAGS.dense_units)
  except ValueError:
    raise errors.UserError(f"--dense_units={','.join(FLAGS.dense_units)}: give integers, e.g. 256,128")
  config = common_flags.train_config(dense_units=dense_units)
  if FLAGS.hparams:
    config = apply_hparams(config, FLAGS.hparams, model_given=FLAGS["model"].present)
  return config


def apply_hparams(config, path: str, model_given: bool = False):
  """Overrides the head's hyper-parameters (and the learning rate) from `bonefrac.tune`'s
  best_hparams.json; its model is trained unless `--model` names another (an error)."""
  try:
    with open(path) as f:
      hparams = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.UserError(f"--hparams={path}: cannot read it as JSON ({e})") from None
  updates = {k: hparams[k] for k in ("dropout", "learning_rate") if k in hparams}
  if "dense_units" in hparams:
    updates["dense_units"] = tuple(int(u) for u in hparams["dense_units"])
  tuned = hparams.get("model")
  if tuned and model_given and tuned != config.model:
    raise errors.UserError(f"--hparams={path} was tuned for --model={tuned}, not {config.model}; "
                           "drop --model or pass the matching one")
  if tuned:
    updates["model"] = tuned
  return dataclasses.replace(config, **updates)


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
  distribute.split_cpu(FLAGS.cpu_replicas)  # before TensorFlow creates its devices
  result = train_lib.train(config_from_flags())
  if "ci95" in result:
    print(report.summary_line(result))
    print(tables.markdown_table(report.summary_rows(result)), end="")
  keys = ("model", "split", "n", "accuracy", "sensitivity", "specificity", "f1", "auc",
          "epochs_run", "chief")
  print(json.dumps({k: result[k] for k in keys if k in result}))


if __name__ == "__main__":
  cli.run(main)
