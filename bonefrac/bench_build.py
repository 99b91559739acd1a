"""Build benchmark: the `kaggle` config's build time against one parallel decode pass.

Every file must be decoded once to be checked, so one parallel decode pass over the files is
the floor of a build; the ratio says what the build adds to it.
"""

import statistics
import tempfile
import time

import tensorflow_datasets as tfds

import bonefrac_tfds
from bonefrac_tfds.bone_fracture import image_files
from bonefrac_tfds.bone_fracture import layout
from bonefrac_tfds.bone_fracture import parallel


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


def build_kaggle(manual_dir, data_dir) -> tfds.core.DatasetBuilder:
  """The kaggle config of `manual_dir`, built into `data_dir` unless it is already there."""
  builder = bonefrac_tfds.BoneFracture(config="kaggle", data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def time_build(manual_dir) -> float:
  """Seconds for a complete `kaggle` build of `manual_dir` into a fresh data_dir."""
  with tempfile.TemporaryDirectory() as data_dir:
    start = time.perf_counter()
    build_kaggle(manual_dir, data_dir)
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
