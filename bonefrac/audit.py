"""`python -m bonefrac.audit --manual_dir DIR | --dataset NAME`: duplicated radiographs across splits.

Writes audit.json (every group of two or more copies of one radiograph, with files, splits and
labels, and a summary) and prints the summary as a table; --sheet DIR writes a PNG per group
that spans splits, for a person to check. Exit status 0, or 2 for a usage error.
"""

import json
import os
import sys

from bonefrac import quiet

quiet.import_tensorflow()  # first: hides TensorFlow's C++ start-up lines (TFDS imports it)

from absl import flags  # noqa: E402

from bonefrac import audit_lib, cli, errors, tables  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("manual_dir", None, "A Kaggle-layout download, as the kaggle config reads it.")
flags.DEFINE_string("dataset", None, "A built TFDS dataset, e.g. bone_fracture/kaggle.")
flags.DEFINE_string("data_dir", None, "TFDS data dir of --dataset (default: TFDS's).")
flags.DEFINE_string("output", "audit.json", "Where to write the audit.")
flags.DEFINE_string("sheet", None, "Folder for PNG contact sheets of the groups that span splits.")


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
  if bool(FLAGS.manual_dir) == bool(FLAGS.dataset):
    raise errors.UserError("give one of --manual_dir=DIR (a download) or --dataset=NAME (a built "
                           "dataset), e.g. python -m bonefrac.audit --manual_dir ~/Downloads/bone")
  if FLAGS.manual_dir and not os.path.isdir(FLAGS.manual_dir):
    raise errors.UserError(f"--manual_dir={FLAGS.manual_dir}: no such folder")
  images = (audit_lib.from_manual_dir(FLAGS.manual_dir) if FLAGS.manual_dir
            else audit_lib.from_dataset(FLAGS.dataset, FLAGS.data_dir))
  if not images:
    raise errors.UserError("no images to audit")
  print(f"Auditing {len(images)} images for duplicates across splits ...", flush=True)
  result = audit_lib.audit(images, progress=_progress_bar(len(images)))
  with open(FLAGS.output, "w") as f:
    json.dump(result, f, indent=1)
  print(tables.markdown_table(audit_lib.summary_rows(result["summary"])), end="", flush=True)
  unreadable = len(result["unreadable"])
  print(f"audit: {FLAGS.output}" + (f"; {unreadable} unreadable files listed there" if unreadable else ""))
  if FLAGS.sheet:
    count = audit_lib.write_sheets(images, result, FLAGS.sheet)
    print(f"contact sheets: {count} PNGs in {FLAGS.sheet}")


def _progress_bar(total: int):
  def wrap(iterable):
    from tqdm import tqdm  # tensorflow-datasets' own dependency
    return tqdm(iterable, total=total, unit="image", file=sys.stderr, mininterval=1.0)
  return wrap


if __name__ == "__main__":
  cli.run(main)
