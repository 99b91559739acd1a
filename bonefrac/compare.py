"""`python -m bonefrac.compare`: train both models under the same settings and tabulate them.

Takes every flag of `bonefrac.train` (they are the shared settings) plus `--models`. Outputs go
to --workdir (default: a new folder runs/compare-<date>-<time>): a folder per model,
comparison.md and comparison.json; an earlier comparison there is replaced only with --overwrite.
"""

import csv
import dataclasses
import json
import os
from typing import Dict, Optional, Sequence

from bonefrac import quiet

quiet.import_tensorflow()  # first: hides TensorFlow's C++ start-up lines

from absl import flags  # noqa: E402

from bonefrac import (cli, distribute, errors, model_card, stats, tables, train, train_lib,  # noqa: E402
                      workdir)

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


def paired_difference(workdirs: Sequence[str], reports: Sequence[Dict]) -> Optional[Dict]:
  """DeLong's paired test of the first two models' ROC AUCs on the images both evaluated, with
  a sentence saying whether the difference is significant at 5%. None for fewer than two."""
  if len(reports) < 2:
    return None
  first, second = ({row["filename"]: row for row in _read_predictions(w, r)}
                   for w, r in zip(workdirs[:2], reports[:2]))
  names = [n for n in first if n in second]
  labels = [int(first[n]["label"]) for n in names]
  result = stats.delong(labels, [float(first[n]["fracture_probability"]) for n in names],
                        [float(second[n]["fracture_probability"]) for n in names])
  a, b = reports[0]["model"], reports[1]["model"]
  low, high = result["ci95"]
  significant = result["p_value"] < 0.05
  words = (f"{a}'s ROC AUC minus {b}'s on the same {len(names)} {reports[0]['split']} images: "
           f"{result['difference']:+.4f} (95% CI {low:+.4f} to {high:+.4f}; DeLong's paired test "
           f"p = {result['p_value']:.3g}): "
           + (f"{a if result['difference'] > 0 else b} is significantly better at the 5% level."
              if significant else "not a significant difference at the 5% level."))
  return {"models": [a, b], "images": len(names), **result, "significant": significant,
          "in_words": words}


def _read_predictions(workdir: str, report: Dict):
  path = os.path.join(workdir, report["outputs"]["predictions"])
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
  unknown = sorted(set(FLAGS.models) - {"cnn", "vgg16"})
  if unknown or not FLAGS.models:
    raise errors.UserError(f"--models={','.join(FLAGS.models)}: choose from cnn,vgg16")
  distribute.split_cpu(FLAGS.cpu_replicas)
  base = train.config_from_flags()
  folder = base.workdir or workdir.new_run_dir("compare")
  folders = [os.path.join(folder, name) for name in FLAGS.models]
  outputs = [os.path.join(folder, name) for name in ("comparison.json", "comparison.md")]
  check_nothing_replaced(folders, outputs, base.overwrite)
  print(f"Comparing {', '.join(FLAGS.models)}; outputs in {folder}", flush=True)
  reports = [train_lib.train(dataclasses.replace(base, model=name, workdir=path))
             for name, path in zip(FLAGS.models, folders)]
  rows = comparison_rows(reports)
  paired = paired_difference(folders, reports)
  with open(outputs[0], "w") as f:
    json.dump({"models": rows, "paired_auc_difference": paired}, f, indent=2)
  table = (markdown_table(rows) + (f"\n{paired['in_words']}\n" if paired else "")
           + model_card.comparison_section(dict(zip(FLAGS.models, reports))))
  with open(outputs[1], "w") as f:
    f.write(table)
  print(table)


def check_nothing_replaced(folders: Sequence[str], outputs: Sequence[str], overwrite: bool) -> None:
  """Before training anything: an earlier comparison's files or finished runs in the models'
  folders are refused (UserError) unless `overwrite`, which says what it replaces."""
  earlier = [path for path in outputs if os.path.exists(path)]
  for path in folders:
    paths = workdir.Paths(path)
    if workdir.earlier_run(paths) and not workdir.interrupted(paths):
      earlier.append(path)
  if earlier and not overwrite:
    raise errors.UserError(f"{', '.join(earlier)} hold an earlier comparison; choose another "
                           "--workdir (or none: a new folder under runs/), or pass --overwrite "
                           "to replace it")
  if earlier:
    print(f"--overwrite: replacing {', '.join(earlier)}", flush=True)


if __name__ == "__main__":
  cli.run(main)
