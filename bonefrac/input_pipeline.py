"""tf.data input pipeline: TFDS -> decode -> resize -> uint8 grey -> cache -> shuffle -> repeat -> batch."""

import shutil
from typing import Mapping, Optional, Union

import tensorflow as tf
import tensorflow_datasets as tfds

import bonefrac_tfds  # noqa: F401  (registers bone_fracture)
from bonefrac.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
JPEG_RATIOS = (1, 2, 4, 8)  # the scales libjpeg can decode at directly
DatasetLike = Union[str, tfds.core.DatasetBuilder]
# No TFDS auto-cache of small datasets' encoded bytes: the pipeline caches decoded images itself,
# and a partly read auto-cached dataset (the first images, for TensorBoard) made TensorFlow warn
# that "the calling iterator did not fully read the dataset being cached".
READ_CONFIG = tfds.ReadConfig(try_autocache=False)


def load_builder(dataset: str, data_dir: Optional[str],
                 manual_dir: Optional[str] = None) -> tfds.core.DatasetBuilder:
  """The TFDS builder of `dataset`, built first when needed (the synthetic config needs no data)."""
  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
  except Exception as e:  # unknown name or config: TFDS's message says which
    raise UserError(f"unknown --dataset={dataset}: {str(e).splitlines()[0]}") from None
  if builder.is_prepared():
    return builder
  print(f"Building {dataset} in {builder.data_dir} (first use) ...", flush=True)
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  try:
    builder.download_and_prepare(download_config=config)
  except Exception as e:
    shutil.rmtree(builder.data_dir, ignore_errors=True)
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(
        f"{dataset} is not built in {builder.data_dir} and could not be built ({first_line}); "
        f"build it with `tfds build {dataset.split('/')[0]} --imports bonefrac_tfds "
        f"--config {builder.builder_config.name} --manual_dir DIR` or pass --data_dir") from None
  return builder


def per_replica_batch_size(global_batch_size: int, num_replicas: int) -> int:
  """The batch each replica gets; the global batch must split evenly over the replicas."""
  if global_batch_size <= 0 or global_batch_size % num_replicas:
    nearest = max(1, global_batch_size // num_replicas) * num_replicas
    raise ValueError(f"--batch_size={global_batch_size} must be a positive multiple of the "
                     f"{num_replicas} replicas in sync; try {nearest}.")
  return global_batch_size // num_replicas


def jpeg_ratio_index(height, width, image_size: int):
  """Index in JPEG_RATIOS of the largest downscale that keeps the short side >= image_size."""
  short = tf.minimum(height, width)
  index = tf.constant(0)
  for i, r in enumerate(JPEG_RATIOS[1:], start=1):
    index = tf.where(short // r >= image_size, i, index)
  return index


def decode_and_resize(encoded, image_size: int, *, keep_aspect: bool = False):
  """Encoded JPEG or PNG bytes -> uint8 [image_size, image_size, 1] grey.

  JPEGs are decoded at 1/2, 1/4 or 1/8 scale inside the JPEG decoder when that still leaves
  the short side at least `image_size`; what remains is a downscale under 2x, for which plain
  bilinear resizing does not alias. PNGs (no such decoder option) get an antialiased resize.
  The resize goes straight to a square, like the original project, or pads to keep the
  aspect ratio.
  """
  def decode_jpeg():
    shape = tf.image.extract_jpeg_shape(encoded)
    # `ratio` is a graph attribute, not a tensor: one branch per ratio.
    image = tf.switch_case(jpeg_ratio_index(shape[0], shape[1], image_size), [
        lambda r=r: tf.io.decode_jpeg(encoded, channels=1, ratio=r, dct_method="INTEGER_FAST")
        for r in JPEG_RATIOS])
    return _resize(image, image_size, keep_aspect, antialias=False)

  def decode_png():
    return _resize(tf.io.decode_png(encoded, channels=1), image_size, keep_aspect, antialias=True)

  image = tf.cond(tf.io.is_jpeg(encoded), decode_jpeg, decode_png)
  image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
  return tf.ensure_shape(image, (image_size, image_size, 1))


def _resize(image, image_size: int, keep_aspect: bool, *, antialias: bool):
  if keep_aspect:
    return tf.image.resize_with_pad(image, image_size, image_size, antialias=antialias)
  return tf.image.resize(image, (image_size, image_size), antialias=antialias)


def balanced_example_weights(builder: tfds.core.DatasetBuilder, split: str) -> Mapping[int, float]:
  """{label: weight} that makes both classes weigh the same in the loss (n / (2 n_label))."""
  ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()},
                          read_config=READ_CONFIG)
  counts = ds.map(lambda ex: tf.one_hot(ex["label"], 2)).reduce(tf.zeros(2), lambda a, b: a + b)
  counts = counts.numpy()
  return {label: float(counts.sum() / (2.0 * max(c, 1.0))) for label, c in enumerate(counts)}


def create_dataset(dataset: DatasetLike, split: str, *, batch_size: int, image_size: int,
                   training: bool, data_dir: Optional[str] = None,
                   input_context: Optional[tf.distribute.InputContext] = None,
                   cache: Optional[str] = "memory", seed: int = 0, repeat: bool = False,
                   deterministic: Optional[bool] = None, keep_aspect: bool = False,
                   example_weights: Optional[Mapping[int, float]] = None,
                   shuffle_buffer: int = 20_000) -> tf.data.Dataset:
  """A `tf.data.Dataset` of `(images, labels)` or, with `example_weights`, `(images, labels, weights)`.

  Args:
    dataset: a TFDS name such as "bone_fracture/synthetic", or a prepared builder.
    split: TFDS split (slicing such as "train[:10%]" works).
    batch_size: the global batch; each input pipeline batches its per-replica share.
    image_size: side of the square uint8 grey images [batch, size, size, 1].
    training: shuffle (seeded), drop the last partial batch; evaluation keeps every example.
    data_dir: TFDS data dir (None: TFDS's default).
    input_context: from `strategy.distribute_datasets_from_function`; shards the examples
      evenly over the input pipelines.
    cache: "memory" (default), a file path prefix for datasets larger than memory, or None.
    seed: shuffle seed.
    repeat: repeat forever (training with `steps_per_epoch`).
    deterministic: element order; default True for evaluation, AUTOTUNE's choice in training.
    keep_aspect: pad to a square instead of stretching.
    example_weights: {label: weight} per-example loss weights (Keras' `class_weight` does not
      work with distributed datasets); see `balanced_example_weights`.
    shuffle_buffer: upper bound of the shuffle buffer (examples).
  Returns:
    Batched, prefetched dataset; labels are float32 (1.0 = fractured).
  """
  builder = (dataset if isinstance(dataset, tfds.core.DatasetBuilder)
             else tfds.builder(dataset, data_dir=data_dir))
  num_pipelines, pipeline_id, batch = 1, 0, batch_size
  if input_context is not None:
    num_pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    batch = per_replica_batch_size(batch_size, input_context.num_replicas_in_sync)
  if num_pipelines > 1:  # by examples, not files: a small split may have one file only
    split = tfds.even_splits(split, n=num_pipelines)[pipeline_id]
  ds = builder.as_dataset(split=split, shuffle_files=False, read_config=READ_CONFIG,
                          decoders={"image": tfds.decode.SkipDecoding()})
  ds = ds.map(lambda ex: (decode_and_resize(ex["image"], image_size, keep_aspect=keep_aspect),
                          tf.cast(ex["label"], tf.float32)), num_parallel_calls=AUTOTUNE)
  if cache == "memory":
    ds = ds.cache()
  elif cache:
    ds = ds.cache(cache)
  if training:
    ds = ds.shuffle(min(shuffle_buffer, _num_examples(builder, split)), seed=seed,
                    reshuffle_each_iteration=True)
  if repeat:  # after the shuffle: each epoch is a permutation of the split
    ds = ds.repeat()
  if example_weights is not None:
    table = tf.constant([example_weights.get(0, 1.0), example_weights.get(1, 1.0)], tf.float32)
    ds = ds.map(lambda x, y: (x, y, tf.gather(table, tf.cast(y, tf.int32))))
  ds = ds.batch(batch, drop_remainder=training, num_parallel_calls=AUTOTUNE)
  order = (not training) if deterministic is None else deterministic
  return ds.with_options(_options(order)).prefetch(AUTOTUNE)


def _options(deterministic: bool) -> tf.data.Options:
  """The pipeline's tf.data options: element order, and no autotuning model."""
  options = tf.data.Options()
  options.deterministic = deterministic
  # No autotuning model: in TF 2.21 deleting an iterator can wait out its thread's sleep of up
  # to 60 s (BUILD_NOTES.md). AUTOTUNE then means one call per core, as fast here.
  options.autotune.enabled = False
  return options


def _num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  return max(1, int(builder.info.splits[split].num_examples))


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """Examples in `split`; 0 when the dataset has no such split."""
  return int(builder.info.splits[split].num_examples) if split in builder.info.splits else 0


def sample_images(builder: tfds.core.DatasetBuilder, image_size: int, count: int = 16):
  """The first `count` training images, uint8 [n, size, size, 1] (for image summaries)."""
  ds = create_dataset(builder, "train", batch_size=count, training=False, image_size=image_size,
                      cache=None)
  images, _ = next(iter(ds))
  return images.numpy()
