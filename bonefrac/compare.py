"""`python -m bonefrac.compare`: train both models under the same settings and tabulate them.

Takes every flag of `bonefrac.train` (they are the shared settings) plus `--models`.
"""

import dataclasses
import json
import os

from bonefrac import quiet

quiet.import_tensorflow()  # first: hides TensorFlow's C++ start-up lines

from absl import flags  # noqa: E402

from bonefrac import cli, distribute, errors, tables, train, train_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(train)  # --helpshort lists the training flags too
flags.DEFINE_list("models", ["cnn", "vgg16"], "The models to compare, trained one after the other.")

COLUMNS = (("accuracy", "accuracy"), ("f1", "F1"), ("sensitivity", "sensitivity"),
           ("specificity", "specificity"), ("auc", "AUC"), ("best_epoch", "epoch kept (val AUC)"),
           ("train_images_per_second", "train images/s"), ("parameters", "parameters"),
           ("wall_seconds", "wall s"))


def comparison_rows(reports):
  return [{"model": r["model"], **{key: r.get(key) for key, _ in COLUMNS}} for r in reports]


def markdown_table(rows) -> str:
  return tables.markdown_table(rows, [("model", "model"), *COLUMNS])


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
  unknown = sorted(set(FLAGS.models) - {"cnn", "vgg16"})
  if unknown or not FLAGS.models:
    raise errors.UserError(f"--models={','.join(FLAGS.models)}: choose from cnn,vgg16")
  distribute.split_cpu(FLAGS.cpu_replicas)
  base = train.config_from_flags()
  reports = [train_lib.train(dataclasses.replace(base, model=name,
                                                 workdir=os.path.join(base.workdir, name)))
             for name in FLAGS.models]
  rows = comparison_rows(reports)
  with open(os.path.join(base.workdir, "comparison.json"), "w") as f:
    json.dump(rows, f, indent=2)
  table = markdown_table(rows)
  with open(os.path.join(base.workdir, "comparison.md"), "w") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  cli.run(main)
