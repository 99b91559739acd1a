"""`python -m bonefrac.predict FILE_OR_FOLDER ... --model_dir=RUN`: fracture probabilities.

Prints a table (and writes it with --output as CSV or JSON); --gradcam DIR writes a PNG per
image with its Grad-CAM overlay. An existing --output file or earlier overlays in DIR are
replaced only with --overwrite (which says so). Exit status 0 when every file was scored, 1
when some could not be read (they have their own rows), 2 for a usage error.
"""

import os
import re
import sys

from bonefrac import quiet

quiet.import_tensorflow()  # first: hides TensorFlow's C++ start-up lines

from absl import flags  # noqa: E402

from bonefrac import cli, errors, gradcam, plots, predict_lib, tables  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", "runs/latest", "A training workdir, a .keras file or an "
                    "export/ SavedModel (default: the run started last).")
flags.DEFINE_string("output", None, "Write the table here: .csv or .json.")
flags.DEFINE_string("gradcam", None, "Folder for Grad-CAM overlays (Keras models only).")
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.", lower_bound=1)
flags.DEFINE_enum("ood", "warn", ["warn", "skip", "ignore"],
                  "Images unlike the training data: warn (score them, one warning each), skip "
                  "(no probability, no Grad-CAM) or ignore (score them silently).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output file and earlier Grad-CAM "
                  "overlays in --gradcam instead of refusing.")

OVERLAY = re.compile(r"^\d{4}_.*\.png$")  # the names write_gradcams gives


def main(argv):
  inputs = argv[1:]
  if not inputs:
    raise errors.UserError("give one or more image files or folders, e.g. "
                           "python -m bonefrac.predict xray.jpg scans/ --model_dir=runs/latest")
  if FLAGS.output and not FLAGS.output.lower().endswith((".csv", ".json")):
    raise errors.UserError(f"--output={FLAGS.output}: name a .csv or .json file")
  earlier_overlays = check_nothing_replaced(FLAGS.output, FLAGS.gradcam, FLAGS.overwrite)
  model = predict_lib.load_model(FLAGS.model_dir)
  if FLAGS.gradcam and model.keras_model is None:
    raise errors.UserError("--gradcam needs a Keras model: pass the training workdir or its "
                           "model.keras as --model_dir, not the export/ SavedModel")
  files = predict_lib.find_files(inputs)
  predictions = predict_lib.predict_files(model, files, FLAGS.batch_size)
  table = predict_lib.rows(predictions, model.thresholds, skip_out_of_distribution=FLAGS.ood == "skip")
  print(tables.markdown_table(table), end="", flush=True)
  if FLAGS.output:
    if os.path.exists(FLAGS.output):
      print(f"--overwrite: replacing {FLAGS.output}", flush=True)
    predict_lib.write_output(table, FLAGS.output)
  if FLAGS.gradcam:
    if earlier_overlays:
      print(f"--overwrite: replacing {len(earlier_overlays)} earlier overlays in {FLAGS.gradcam}",
            flush=True)
      for name in earlier_overlays:
        os.remove(os.path.join(FLAGS.gradcam, name))
    write_gradcams(model, predictions, FLAGS.gradcam)
  if FLAGS.ood != "ignore":
    for p in predictions:
      if p.in_distribution is False:
        print(f"warning: {p.path} is not like the training images ({p.ood_reason}); "
              + ("skipped" if FLAGS.ood == "skip" else "its probability means little"),
              file=sys.stderr)
  failed = [p for p in predictions if p.error]
  for p in failed:
    print(f"error: {p.path}: {p.error}", file=sys.stderr)
  print(f"{len(predictions) - len(failed)} of {len(predictions)} files scored"
        f"{'; ' + str(len(failed)) + ' could not be read' if failed else ''}", flush=True)
  sys.exit(1 if failed else 0)


def check_nothing_replaced(output, gradcam_dir, overwrite: bool):
  """Refuses (UserError), before anything is scored, to replace an existing --output file or
  earlier overlays in --gradcam without `overwrite`; the names of those overlays."""
  overlays = []
  if gradcam_dir and os.path.isdir(gradcam_dir):
    overlays = sorted(n for n in os.listdir(gradcam_dir) if OVERLAY.match(n))
  if overwrite:
    return overlays
  if output and os.path.exists(output):
    raise errors.UserError(f"--output={output} exists; name another file, or pass --overwrite "
                           "to replace it")
  if overlays:
    raise errors.UserError(f"--gradcam={gradcam_dir} holds {len(overlays)} earlier overlays; name "
                           "another folder, or pass --overwrite to replace them")
  return overlays


def write_gradcams(model, predictions, folder: str) -> None:
  """One PNG per scored file: the image beside its Grad-CAM overlay."""
  os.makedirs(folder, exist_ok=True)
  scored = [p for p in predictions
            if p.error is None and not (FLAGS.ood == "skip" and p.in_distribution is False)]
  for start in range(0, len(scored), FLAGS.batch_size):
    batch = scored[start:start + FLAGS.batch_size]
    pixels = model.pixels([predict_lib.read_for_model(p.path) for p in batch])
    maps = gradcam.heatmaps(model.keras_model, pixels)
    for i, (p, image, heat) in enumerate(zip(batch, pixels, maps), start=start):
      name = f"{i:04d}_{os.path.splitext(os.path.basename(p.path))[0]}.png"
      title = f"{p.path}: fracture probability {p.probability:.3f}"
      plots.save_png(plots.gradcam_figure(image, heat, title), os.path.join(folder, name))
  print(f"Grad-CAM overlays: {len(scored)} PNGs in {folder}", flush=True)


if __name__ == "__main__":
  cli.run(main)
