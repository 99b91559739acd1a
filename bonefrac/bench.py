"""Benchmarks that compare side by side in one run, reported as ratios.

  python -m bonefrac.bench build --data DIR [--repeats 2]

`build`: the `kaggle` config's build time against one parallel decode pass over the same files
(the floor: every file must be decoded once to be checked). DIR is a Kaggle-layout tree, e.g.
from `python -m bonefrac_tfds.bone_fracture.fake_download DIR --per_class 1000 --no_quirks`.
"""

import statistics
import tempfile
import time

from absl import app
from absl import flags
import tensorflow_datasets as tfds

import bonefrac_tfds
from bonefrac_tfds.bone_fracture import image_files
from bonefrac_tfds.bone_fracture import layout
from bonefrac_tfds.bone_fracture import parallel

_DATA = flags.DEFINE_string("data", None, "A Kaggle-layout tree (the kaggle config's manual dir).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repetitions of each measurement.")


def time_decode_pass(manual_dir) -> tuple:
  """(seconds, files) for reading and decoding every candidate image once, on all cores."""
  entries = [e for split in layout.find_layout(manual_dir).splits.values() for e in split]
  start = time.perf_counter()
  for _ in parallel.ordered_map(_decoded_or_none, entries):
    pass
  return time.perf_counter() - start, len(entries)


def _decoded_or_none(entry):
  try:
    return image_files.decode_grey(entry.path.read_bytes())[0].shape
  except image_files.ImageRejected:
    return None


def time_build(manual_dir) -> float:
  """Seconds for a complete `kaggle` build of `manual_dir` into a fresh data_dir."""
  with tempfile.TemporaryDirectory() as data_dir:
    builder = bonefrac_tfds.BoneFracture(config="kaggle", data_dir=data_dir)
    start = time.perf_counter()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return time.perf_counter() - start


def bench_build(manual_dir, repeats: int) -> dict:
  """Interleaves decode passes and builds so that both see the same machine state.

  The first build is reported apart: it includes TFDS's one-time lazy imports (about 4 s per
  process, whatever the dataset's size), which would swamp the ratio on a small tree.
  """
  first_build = time_build(manual_dir)
  decode, build, files = [], [], 0
  for _ in range(repeats):
    seconds, files = time_decode_pass(manual_dir)
    decode.append(seconds)
    build.append(time_build(manual_dir))
  d, b = statistics.median(decode), statistics.median(build)
  return {"files": files, "first_build_s": first_build, "decode_pass_s": d, "build_s": b,
          "decode_images_per_s": files / d, "build_over_decode": b / d}


def main(argv):
  if len(argv) != 2 or argv[1] not in ("build",):
    raise app.UsageError("usage: python -m bonefrac.bench build --data DIR")
  if not _DATA.value:
    raise app.UsageError("--data is required: a Kaggle-layout tree of images")
  for key, value in bench_build(_DATA.value, _REPEATS.value).items():
    print(f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}")


if __name__ == "__main__":
  app.run(main)
