"""Benchmarks that compare side by side in one run, reported as ratios (thin entry point).

  python -m bonefrac.bench build --data DIR [--repeats 3]
  python -m bonefrac.bench pipeline --data DIR [--data_dir D] [--repeats 2] [--steady_epochs 20]

DIR is a Kaggle-layout tree (the kaggle config's manual dir), for example from
`python -m bonefrac_tfds.bone_fracture.fake_download DIR --per_class 1000 --no_quirks`.
`build`: see `bonefrac.bench_build`; `pipeline`: see `bonefrac.bench_pipeline` (the original
loader needs `pip install ".[bench]"`).
"""

import tempfile

from absl import app
from absl import flags

_DATA = flags.DEFINE_string("data", None, "A Kaggle-layout tree (the kaggle config's manual dir).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where to build the dataset (default: a temp dir).")
_REPEATS = flags.DEFINE_integer("repeats", None, "Interleaved rounds (default 3 build, 2 pipeline).")
_STEADY_EPOCHS = flags.DEFINE_integer("steady_epochs", 20, "Cached epochs timed for steady state.")
_WHICH = flags.DEFINE_list("which", "seed,keras_ifd,decode_only,ours", "pipeline: the loaders to time.")
USAGE = "usage: python -m bonefrac.bench {build,pipeline} --data DIR"


def run(command: str) -> dict:
  if command == "build":
    from bonefrac import bench_build
    return bench_build.bench_build(_DATA.value, _REPEATS.value or 3)
  from bonefrac import bench_pipeline
  with tempfile.TemporaryDirectory() as scratch:
    return bench_pipeline.bench_pipeline(
        _DATA.value, _DATA_DIR.value or scratch, repeats=_REPEATS.value or 2,
        steady_epochs=_STEADY_EPOCHS.value, which=tuple(_WHICH.value))


def main(argv):
  if len(argv) != 2 or argv[1] not in ("build", "pipeline"):
    raise app.UsageError(USAGE)
  if not _DATA.value:
    raise app.UsageError("--data is required: a Kaggle-layout tree of images")
  for key, value in run(argv[1]).items():
    print(f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}")


if __name__ == "__main__":
  app.run(main)
