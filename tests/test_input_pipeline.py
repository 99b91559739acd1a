"""The tf.data pipeline and the device-side preprocessing layers."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import bonefrac_tfds
from bonefrac import augment
from bonefrac import input_pipeline
from test_builder_testcase import TINY_SYNTHETIC

SIZE = 48


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
  b = bonefrac_tfds.BoneFracture(config=TINY_SYNTHETIC, data_dir=str(tmp_path_factory.mktemp("d")))
  b.download_and_prepare()
  return b


def _labels(ds):
  return np.concatenate([y.numpy() for _, y in ds])


def test_shapes_dtypes_labels_and_batches(builder):
  ds = input_pipeline.create_dataset(builder, "train", batch_size=4, image_size=SIZE, training=True)
  batches = list(ds)
  assert len(batches) == 1  # 6 examples, training drops the partial batch
  images, labels = batches[0]
  assert images.dtype == tf.uint8 and images.shape == (4, SIZE, SIZE, 1)
  assert labels.dtype == tf.float32 and set(labels.numpy()) <= {0.0, 1.0}
  evaluation = input_pipeline.create_dataset(builder, "train", batch_size=4, image_size=SIZE,
                                             training=False)
  assert [int(x.shape[0]) for x, _ in evaluation] == [4, 2]  # evaluation keeps every example
  assert sorted(_labels(evaluation)) == [0, 0, 0, 1, 1, 1]


def _image_keys(ds):
  return [hash(image.tobytes()) for images, _ in ds for image in images.numpy()]


def test_seeded_shuffle_is_deterministic_and_shuffles(builder):
  def order(seed):
    return _image_keys(input_pipeline.create_dataset(
        builder, "train", batch_size=1, image_size=SIZE, training=True, seed=seed,
        deterministic=True))
  stored = _image_keys(input_pipeline.create_dataset(builder, "train", batch_size=1,
                                                     image_size=SIZE, training=False))
  assert order(1) == order(1)  # the same seed, the same order of the same images
  assert sorted(order(1)) == sorted(stored)
  # 6 examples: a seeded order equals the stored one, or another seed's, by chance 1 in 720.
  assert order(1) != stored and order(1) != order(2)


def test_each_epoch_of_a_repeated_pipeline_is_a_permutation_of_the_split(builder):
  ds = input_pipeline.create_dataset(builder, "train", batch_size=1, image_size=SIZE,
                                     training=True, repeat=True, seed=0, deterministic=True)
  keys = _image_keys(ds.take(4 * 6))
  epochs = [keys[i:i + 6] for i in range(0, len(keys), 6)]
  assert all(len(set(epoch)) == 6 for epoch in epochs), epochs  # each example once per epoch
  assert len({tuple(epoch) for epoch in epochs}) > 1  # and reshuffled between epochs


def test_sharding_over_two_pipelines_covers_every_example_once(builder):
  seen = []
  for pipeline_id in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
    ds = input_pipeline.create_dataset(builder, "train", batch_size=2, image_size=SIZE,
                                       training=False, input_context=context)
    for images, _ in ds:
      assert images.shape[0] <= 1  # per-replica batch = 2 // 2
      seen += [hash(im.numpy().tobytes()) for im in images]
  assert len(seen) == 6 and len(set(seen)) == 6


def test_global_batch_must_split_over_replicas():
  with pytest.raises(ValueError, match="multiple of the 4 replicas"):
    input_pipeline.per_replica_batch_size(6, 4)


def test_example_weights(builder):
  assert input_pipeline.balanced_example_weights(builder, "train") == {0: 1.0, 1: 1.0}  # 3 and 3
  for split in ("train[:2]", "train[:4]", "train[:5]"):  # whatever their mix of labels
    labels = _labels(input_pipeline.create_dataset(builder, split, batch_size=6, image_size=SIZE,
                                                   training=False)).astype(int)
    counts = np.bincount(labels, minlength=2)
    weights = input_pipeline.balanced_example_weights(builder, split)
    for label in (0, 1):
      assert weights[label] == pytest.approx(len(labels) / (2 * max(counts[label], 1)))
    if counts.min() > 0:  # both classes then weigh the same in the loss
      assert weights[0] * counts[0] == pytest.approx(weights[1] * counts[1])
  ds = input_pipeline.create_dataset(builder, "train", batch_size=6, image_size=SIZE,
                                     training=False, example_weights={0: 0.5, 1: 2.0})
  _, labels, w = next(iter(ds))
  assert np.array_equal(w.numpy(), np.where(labels.numpy() == 1, 2.0, 0.5))


def _jpeg(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="JPEG", quality=95)
  return buffer.getvalue()


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


@pytest.mark.parametrize("encode", [_jpeg, _png])
def test_decode_and_resize_eagerly_and_inside_dataset_map(encode):
  y, x = np.mgrid[0:480, 0:400]
  source = ((x + y) % 256).astype(np.uint8)  # smooth ramp: resize methods agree on it
  data = encode(source)
  eager = input_pipeline.decode_and_resize(tf.constant(data), 64).numpy()
  mapped = next(iter(tf.data.Dataset.from_tensors(data).map(
      lambda b: input_pipeline.decode_and_resize(b, 64)))).numpy()
  assert eager.shape == (64, 64, 1) and eager.dtype == np.uint8
  assert np.array_equal(eager, mapped)
  reference = np.asarray(Image.fromarray(source).resize((64, 64), Image.BILINEAR), dtype=np.float32)
  assert np.abs(eager[..., 0] - reference).mean() < 12


def test_jpeg_ratio_keeps_the_short_side_above_the_target():
  ratios = [input_pipeline.JPEG_RATIOS[int(input_pipeline.jpeg_ratio_index(h, w, 224))] for h, w in
            [(500, 600), (448, 1000), (1800, 2000), (100, 100)]]
  assert ratios == [2, 2, 8, 1]


def test_keep_aspect_pads():
  source = np.full((100, 200), 200, np.uint8)
  out = input_pipeline.decode_and_resize(tf.constant(_png(source)), 50, keep_aspect=True).numpy()
  assert out[0, 25, 0] == 0 and out[25, 25, 0] == 200  # black bars above and below


def test_both_normalisations():
  grey = np.array([[[[0], [128], [255]]]], np.uint8)  # [1, 1, 3, 1]
  cnn = augment.create_preprocessing("cnn")(grey, training=False).numpy()
  assert cnn.shape == (1, 1, 3, 3)  # grey, fine and coarse local contrast
  assert np.allclose(cnn[0, 0, :, 0], [0, 128 / 255, 1])
  vgg = augment.create_preprocessing("vgg16")(grey, training=False).numpy()
  means_bgr = np.array([103.939, 116.779, 123.68])  # caffe mode: BGR order, ImageNet means
  assert np.allclose(vgg[0, 0, 1], 128 - means_bgr, atol=1e-3)
  assert np.allclose(vgg[0, 0, 2], 255 - means_bgr, atol=1e-3)


def test_local_contrast_marks_a_thin_dark_line_and_ignores_flat_brightness():
  images = np.full((1, 40, 40, 1), 0.8, np.float32)
  images[0, :, 20] = 0.5  # a 1 px dark line across a bright bone
  out = augment.LocalContrast()(images).numpy()
  assert np.allclose(out[..., 0], images[..., 0])
  fine = out[0, :, :, 1]
  assert np.allclose(fine[:, :10], 0, atol=1e-6)  # flat, however bright: nothing
  assert fine[20, 20] < -1.5 and fine[20, 19] > 0  # the line stands out, its sides a little
  assert np.allclose(augment.LocalContrast()(images + 0.1), out + [0.1, 0, 0], atol=1e-4)


def test_augmentation_in_training_only():
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1)).astype(np.uint8)
  model = augment.create_preprocessing("cnn", augment=augment.AugmentConfig(), seed=1)
  plain = augment.create_preprocessing("cnn")
  assert np.allclose(model(images, training=False), plain(images, training=False))
  assert not np.allclose(model(images, training=True), plain(images, training=False))


def test_file_cache_gives_the_same_examples(builder, tmp_path):
  def make(cache):
    return np.concatenate([x.numpy() for x, _ in input_pipeline.create_dataset(
        builder, "train", batch_size=3, image_size=SIZE, training=False, cache=cache)])
  assert np.array_equal(make(str(tmp_path / "cache")), make(None))
  assert list(tmp_path.glob("cache*"))  # the cache files were written


def test_no_autotuning_thread_to_wait_for_when_an_iterator_is_deleted(builder):
  # TF 2.21 sometimes waits out the autotuning thread's sleep (up to 60 s) on deleting an iterator.
  for training in (True, False):
    ds = input_pipeline.create_dataset(builder, "train", batch_size=2, image_size=SIZE,
                                       training=training, repeat=training)
    assert ds.options().autotune.enabled is False
    assert next(iter(ds))[0].shape == (2, SIZE, SIZE, 1)


def test_preprocessing_stays_float32_under_mixed_precision():
  import keras
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    layer = augment.create_preprocessing("vgg16", augment=augment.AugmentConfig(), seed=0)
    out = layer(np.full((1, 32, 32, 1), 200, np.uint8), training=True)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert out.dtype == "float32"


def test_a_keras_model_trains_on_the_pipeline(builder):
  import keras
  train = input_pipeline.create_dataset(builder, "train", batch_size=2, image_size=32,
                                        training=True)
  inputs = keras.Input((32, 32, 1), dtype="uint8")
  x = augment.create_preprocessing("cnn", augment=augment.AugmentConfig(), seed=0)(inputs)
  x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
  model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
  model.compile(optimizer="adam", loss="binary_crossentropy")
  history = model.fit(train, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])


def test_one_affine_warp_keeps_a_thin_line_sharper_than_three_resamplings():
  import keras
  from keras import layers
  images = np.full((32, 64, 64, 1), 200, np.float32)
  images[:, :, 31] = 60  # a 1 px dark line, like a fracture gap at 224 px
  three = keras.Sequential([layers.RandomRotation(0.03, fill_mode="constant", seed=0),
                            layers.RandomZoom(0.1, fill_mode="constant", seed=0),
                            layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=0)])
  one = augment.RandomAffine(0.03, 0.1, 0.05, seed=0)

  def line_depth(layer):
    out = np.asarray(layer(images, training=True))[:, 16:48, 8:56, 0]
    return float((200 - out.min(axis=2)).mean())  # how dark the line stays, row by row

  assert line_depth(one) > 1.1 * line_depth(three)
  assert np.array_equal(np.asarray(one(images, training=False)), images)
  unchanged = np.asarray(augment.RandomAffine(0.0, 0.0, 0.0)(images, training=True))
  np.testing.assert_allclose(unchanged, images, atol=1e-3)


def test_box_mean_equals_average_pooling_with_same_padding():
  import keras
  images = np.random.default_rng(0).random((2, 23, 31, 1)).astype(np.float32)
  for size in (5, 15):
    pooled = keras.ops.average_pool(images, size, strides=1, padding="same")
    assert np.allclose(augment.box_mean(images, size), pooled, atol=1e-5)


def test_the_random_layers_draw_independently():
  # Layers given the same integer seed draw the same uniform numbers: contrast, brightness,
  # the flip and the rotation angle would then move together, image by image.
  augmentation = augment.create_augmentation(augment.AugmentConfig(horizontal_flip=True), seed=0)
  images = np.zeros((64, 8, 8, 1), np.float32)
  draws = {
      "angle": np.asarray(augmentation.get_layer("random_affine").random_parameters(64)[0]),
      "contrast": augmentation.get_layer("random_contrast").get_random_transformation(images)[
          "contrast_factor"],
      "brightness": augmentation.get_layer("random_brightness").get_random_transformation(images)[
          "rgb_delta"],
      "flip": augmentation.get_layer("random_flip").get_random_transformation(images)["flips"],
  }
  draws = {name: np.asarray(value, np.float64).reshape(64) for name, value in draws.items()}
  names = sorted(draws)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      # 64 independent pairs: |r| has a standard error of 1/8; identical streams give 0.87-1.
      assert abs(np.corrcoef(draws[a], draws[b])[0, 1]) < 0.5, (a, b)
