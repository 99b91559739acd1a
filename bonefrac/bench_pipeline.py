"""Pipeline benchmark: images/s of bonefrac's tf.data pipeline against the loaders users pick.

Measured in one run, interleaved, on the train split of one Kaggle-layout tree:
- `seed`: the original project's loader, tf_keras `ImageDataGenerator(rescale=1/255)
  .flow_from_dataframe` at 224 px, batch 32 (needs the `bench` extra: tf_keras, pandas);
- `keras_ifd`: Keras 3 `image_dataset_from_directory`, `/255`, prefetch;
- `keras_ifd_cached`: the same with `.cache()`, once the cache is full: beside `ours_steady`
  it measures the pipeline itself, not only that ours caches;
- `ours_first`: `input_pipeline.create_dataset`, first pass (decode, resize, fill the cache);
- `ours_steady`: the same dataset's later epochs, served from the cache;
- `decode_only`: TFDS read + full-size one-channel JPEG decode and nothing else, the floor
  that any first pass pays (every image must be decoded once).
Ours yields uint8 grey: grey -> RGB and normalisation run on the accelerator (`augment`).
"""

import statistics
import time

import psutil
import tensorflow as tf
import tensorflow_datasets as tfds

from bonefrac import bench_build
from bonefrac import input_pipeline
from bonefrac_tfds.bone_fracture import layout

IMAGE_SIZE, BATCH = 224, 32  # the original project's setting


def time_pass(batches) -> tuple:
  """(seconds, images) to draw every batch of `batches` once."""
  start, images = time.perf_counter(), 0
  for batch in batches:
    images += int(batch[0].shape[0])
  return time.perf_counter() - start, images


def seed_loader(entries, *, image_size: int = IMAGE_SIZE, batch_size: int = BATCH):
  """The original loader; one pass is `len(generator)` batches (it loops forever)."""
  import pandas as pd  # the `bench` extra
  from tf_keras.preprocessing.image import ImageDataGenerator
  frame = pd.DataFrame({"image": [str(e.path) for e in entries],
                        "label": [str(e.label) for e in entries]})
  generator = ImageDataGenerator(rescale=1 / 255).flow_from_dataframe(
      frame, x_col="image", y_col="label", target_size=(image_size, image_size),
      batch_size=batch_size, class_mode="binary", shuffle=True)
  return (generator[i] for i in range(len(generator)))


def keras_ifd(train_dir, cache: bool = False):
  """Keras' `image_dataset_from_directory`, scaled to [0, 1]; `cache`: its batches cached in
  memory after the first pass, as a user would add to compare with ours."""
  import keras
  ds = keras.utils.image_dataset_from_directory(str(train_dir), image_size=(IMAGE_SIZE, IMAGE_SIZE),
                                                batch_size=BATCH, verbose=False)
  ds = ds.map(lambda x, y: (x / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
  return (ds.cache() if cache else ds).prefetch(tf.data.AUTOTUNE)


def time_keras_ifd_cached(train_dir, steady_epochs: int) -> float:
  """Images/s of `keras_ifd(cache=True)` once its cache is full (after one pass)."""
  ds = keras_ifd(train_dir, cache=True)
  time_pass(ds)
  steady = [time_pass(ds) for _ in range(steady_epochs)]
  return sum(n for _, n in steady) / sum(s for s, _ in steady)


def decode_only(builder):
  ds = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})

  def decode(ex):  # the shape only, so that images of any size can be batched
    image = tf.io.decode_image(ex["image"], channels=1, expand_animations=False)
    return tf.shape(image), ex["label"]

  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def time_ours(builder, steady_epochs: int) -> dict:
  """First-pass and steady-state rates of a fresh cached pipeline, and its memory growth."""
  rss = psutil.Process().memory_info().rss
  ds = input_pipeline.create_dataset(builder, "train", batch_size=BATCH, image_size=IMAGE_SIZE,
                                     training=True)
  first_s, n = time_pass(ds)
  rss_cached = psutil.Process().memory_info().rss
  steady = [time_pass(ds) for _ in range(steady_epochs)]
  steady_s, steady_n = sum(s for s, _ in steady), sum(i for _, i in steady)
  return {"ours_first": n / first_s, "ours_steady": steady_n / steady_s, "images": n,
          "cache_mb": (rss_cached - rss) / 2**20,
          "peak_mb": (psutil.Process().memory_info().rss - rss) / 2**20}


def bench_pipeline(manual_dir, data_dir, *, repeats: int = 2, steady_epochs: int = 20,
                   which=("seed", "keras_ifd", "keras_ifd_cached", "decode_only", "ours")) -> dict:
  """Median images/s of each loader over `repeats` interleaved rounds, and the ratios."""
  builder = bench_build.build_kaggle(manual_dir, data_dir)
  found = layout.find_layout(manual_dir)
  train, train_dir = found.splits["train"], found.split_dirs["train"]
  loaders = {"decode_only": lambda: decode_only(builder), "seed": lambda: seed_loader(train),
             "keras_ifd": lambda: keras_ifd(train_dir)}
  rates, memory = {}, {}
  for _ in range(repeats):
    if "ours" in which:  # first, so that its memory growth is not hidden by freed memory
      ours = time_ours(builder, steady_epochs)
      memory = memory or {k: ours.pop(k) for k in ("images", "cache_mb", "peak_mb")}
      for key in ("ours_first", "ours_steady"):
        rates.setdefault(key, []).append(ours[key])
    if "keras_ifd_cached" in which:
      rates.setdefault("keras_ifd_cached", []).append(time_keras_ifd_cached(train_dir,
                                                                            steady_epochs))
    for name, make in loaders.items():
      if name in which:
        seconds, n = time_pass(make())
        rates.setdefault(name, []).append(n / seconds)
  result = {key: statistics.median(values) for key, values in rates.items()}
  # Memory from the first round only: later rounds reuse memory the allocator kept.
  return {**result, **memory, **_ratios({**result, **memory})}


def _ratios(rates: dict) -> dict:
  ratios = {}
  pairs = [("ours_steady", "seed"), ("ours_steady", "keras_ifd"),
           ("ours_steady", "keras_ifd_cached"), ("ours_first", "seed"),
           ("ours_first", "keras_ifd"), ("ours_first", "decode_only")]
  for ours, base in pairs:
    if ours in rates and base in rates:
      ratios[f"{ours}_over_{base}"] = rates[ours] / rates[base]
  if "cache_mb" in rates:
    ratios["cache_mb_per_1k_images"] = 1000 * rates["peak_mb"] / rates["images"]
  return ratios
