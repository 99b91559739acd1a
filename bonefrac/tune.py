"""`python -m bonefrac.tune`: KerasTuner search over the head's dropout and dense widths."""

import json

from bonefrac import quiet

quiet.import_tensorflow()  # first: hides TensorFlow's C++ start-up lines

from absl import flags  # noqa: E402

from bonefrac import cli, common_flags, distribute, errors, tune_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common_flags)  # --helpshort lists the shared flags too

flags.DEFINE_string("workdir", "runs/tune", "The search's folder: trials, logs, best_hparams.json. "
                    "Run again with the same workdir to continue an interrupted search.")
flags.DEFINE_enum("tuner", "hyperband", list(tune_lib.TUNERS), "KerasTuner's search algorithm.")
flags.DEFINE_integer("max_trials", 10, "Trials of bayesian and random (hyperband derives its own "
                     "from --max_epochs and --hyperband_factor).", lower_bound=1)
flags.DEFINE_integer("max_epochs", 27, "Epochs per trial (hyperband: of its longest bracket).",
                     lower_bound=1)
flags.DEFINE_integer("hyperband_factor", 3, "Hyperband's reduction factor.", lower_bound=2)
flags.DEFINE_string("objective", "val_auc", "Logged metric to optimise (losses, fp and fn are "
                    "minimised, the others maximised).")
flags.DEFINE_bool("tune_learning_rate", False, "Also search the learning rate (1e-4 to 3e-3, log).")
flags.DEFINE_bool("overwrite", False, "Start afresh, deleting an earlier search in --workdir.")


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
  distribute.split_cpu(FLAGS.cpu_replicas)  # before TensorFlow creates its devices
  if FLAGS.tuner == "hyperband" and FLAGS["max_trials"].present:
    print("note: --max_trials does not apply to hyperband (its trials follow from --max_epochs "
          "and --hyperband_factor)", flush=True)
  search_config = tune_lib.SearchConfig(
      tuner=FLAGS.tuner, max_trials=FLAGS.max_trials, max_epochs=FLAGS.max_epochs,
      objective=FLAGS.objective, tune_learning_rate=FLAGS.tune_learning_rate,
      overwrite=FLAGS.overwrite, hyperband_factor=FLAGS.hyperband_factor)
  best = tune_lib.search(common_flags.train_config(), search_config)
  if best is not None:
    print(json.dumps(best))
    print(f"Retrain the best: python -m bonefrac.train --hparams={FLAGS.workdir}/best_hparams.json")


if __name__ == "__main__":
  cli.run(main)
