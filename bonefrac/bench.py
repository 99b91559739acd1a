"""Benchmarks that compare side by side in one run, reported as ratios (thin entry point).

  python -m bonefrac.bench build --data DIR [--repeats 3]
  python -m bonefrac.bench pipeline --data DIR [--data_dir D] [--repeats 2] [--steady_epochs 20]
  python -m bonefrac.bench train [--models cnn,vgg16] [--precisions float32,auto] [--xla off,on]
                                 [--steps 10] [--dataset NAME --data_dir D] [--data DIR]
  python -m bonefrac.bench audit --data DIR     # DIR from fake_download --leak N

DIR is a Kaggle-layout tree (the kaggle config's manual dir), for example from
`python -m bonefrac_tfds.bone_fracture.fake_download DIR --per_class 1000 --no_quirks`.
`build`: see `bonefrac.bench_build`; `pipeline`: see `bonefrac.bench_pipeline`; `train`: see
`bonefrac.bench_train` (there `--data` is optional and adds the original's setup); `audit`: see
`bonefrac.bench_audit`. The original loader and the perceptual hashes need
`pip install ".[bench]"`.
"""

import tempfile

from bonefrac import quiet

quiet.import_tensorflow()  # first: hides TensorFlow's C++ start-up lines

from absl import flags  # noqa: E402

from bonefrac import cli, errors  # noqa: E402

_DATA = flags.DEFINE_string("data", None, "A Kaggle-layout tree (the kaggle config's manual dir).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where to build the dataset (default: a temp dir).")
_REPEATS = flags.DEFINE_integer("repeats", None, "Interleaved rounds (default 3 build, 2 pipeline).")
_STEADY_EPOCHS = flags.DEFINE_integer("steady_epochs", 20, "Cached epochs timed for steady state.")
_WHICH = flags.DEFINE_list("which", "seed,keras_ifd,keras_ifd_cached,decode_only,ours",
                           "pipeline: the loaders to time.")
_MODELS = flags.DEFINE_list("models", "cnn,vgg16", "train: the models to time.")
_PRECISIONS = flags.DEFINE_list("precisions", "float32,auto", "train: precision policies (auto "
                                "resolves per device).")
_XLA = flags.DEFINE_list("xla", "off,on", "train: time without and/or with XLA.")
_STEPS = flags.DEFINE_integer("steps", 10, "train: timed steps per setup, after 3 warm-up steps.")
_DATASET = flags.DEFINE_string("dataset", "bone_fracture/synthetic", "train: TFDS dataset whose "
                               "batches are cycled (built first if needed).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "train: image side.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "train: batch size.")
COMMANDS = ("build", "pipeline", "train", "audit")
USAGE = "usage: python -m bonefrac.bench {build,pipeline,train,audit} [--data DIR]"


def run(command: str) -> dict:
  if command == "train":
    from bonefrac import bench_train, train_lib
    config = train_lib.TrainConfig(dataset=_DATASET.value, data_dir=_DATA_DIR.value,
                                   image_size=_IMAGE_SIZE.value, batch_size=_BATCH_SIZE.value)
    return bench_train.bench_train(config, model_names=_MODELS.value, precisions=_PRECISIONS.value,
                                   xla=[v == "on" for v in _XLA.value], steps=_STEPS.value,
                                   manual_dir=_DATA.value)
  if command == "audit":
    from bonefrac import bench_audit
    try:
      return bench_audit.bench_audit(_DATA.value)
    except ValueError as e:
      raise errors.UserError(str(e)) from None
  if command == "build":
    from bonefrac import bench_build
    return bench_build.bench_build(_DATA.value, _REPEATS.value or 3)
  from bonefrac import bench_pipeline
  with tempfile.TemporaryDirectory() as scratch:
    return bench_pipeline.bench_pipeline(
        _DATA.value, _DATA_DIR.value or scratch, repeats=_REPEATS.value or 2,
        steady_epochs=_STEADY_EPOCHS.value, which=tuple(_WHICH.value))


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise errors.UserError(USAGE)
  if not _DATA.value and argv[1] != "train":
    raise errors.UserError(f"{argv[1]} needs --data: a Kaggle-layout tree of images")
  for key, value in run(argv[1]).items():
    print(f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}")


if __name__ == "__main__":
  cli.run(main)
