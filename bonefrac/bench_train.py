"""Training benchmark: images/s of each model per precision, with and without XLA, in one run.

Every setup trains on the same few real batches from `input_pipeline.create_dataset`, cycled
from memory, so that the figures are the model's step time, not the input's; the models are
built without augmentation, because Keras turns `jit_compile` off for a model holding its
random preprocessing layers (they do not support XLA), which would make the XLA rows a no-op. With a
Kaggle-layout tree (`data`) and the `bench` extra, the original's setup is timed too: its
loader (tf_keras ImageDataGenerator, rescale 1/255, RGB, 224 px) feeding its model (Flatten
head, float32), and every other figure is also given as a ratio to it.
"""

import dataclasses
import itertools
import time
from typing import Dict, Optional, Sequence

import keras
import tensorflow as tf

from bonefrac import distribute, input_pipeline, train_lib

BATCHES_CYCLED = 4


class _StepEnds(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.times = []

  def on_train_batch_end(self, batch, logs=None):
    self.times.append(time.perf_counter())


def time_fit(model: keras.Model, data, steps: int, warmup_steps: int, batch_size: int) -> float:
  """Training images/s over `steps` steps after `warmup_steps` (tracing, compilation).

  Timed from the end of one step to the end of the last: `fit`'s own start-up (a new iterator,
  callbacks) is not a training step; timed with `fit`, it halved the CNN's figure at 20 steps.
  """
  model.fit(data, steps_per_epoch=warmup_steps, epochs=1, verbose=0, shuffle=False)
  ends = _StepEnds()
  model.fit(data, steps_per_epoch=steps + 1, epochs=1, verbose=0, shuffle=False, callbacks=[ends])
  return steps * batch_size / (ends.times[-1] - ends.times[0])


def ours(config: train_lib.TrainConfig, builder, precision: str, jit_compile: bool, steps: int,
         warmup_steps: int) -> float:
  """Our model under `precision` (a resolved policy name) on our pipeline's batches."""
  keras.mixed_precision.set_global_policy(precision)
  try:
    model = train_lib.build_model(dataclasses.replace(config, vgg16_weights="none", augment=False))
    train_lib.compile_model(model, config.learning_rate, jit_compile)
    data = input_pipeline.create_dataset(builder, "train", batch_size=config.batch_size,
                                         image_size=config.image_size, training=True, cache=None)
    data = data.take(BATCHES_CYCLED).cache().repeat()
    return time_fit(model, data, steps, warmup_steps, config.batch_size)
  finally:
    keras.mixed_precision.set_global_policy("float32")


def original_model(name: str, image_size: int) -> keras.Model:
  """The original's model on its input (float32 RGB in [0, 1]), no augmentation: its CNN
  (valid 3x3 convs, batch norm, max pooling, dropout 0.3 after blocks two and three) or the
  frozen VGG16 base, then its head: Flatten, Dense 256, Dropout 0.3, Dense 128, Dropout 0.3,
  one sigmoid unit."""
  inputs = keras.Input((image_size, image_size, 3))
  if name == "vgg16":
    base = keras.applications.VGG16(include_top=False, weights=None,
                                    input_shape=(image_size, image_size, 3))
    base.trainable = False
    x = base(inputs)
  else:
    x = inputs
    for filters, drop in ((32, 0.0), (64, 0.3), (128, 0.3)):
      x = keras.layers.MaxPooling2D()(keras.layers.BatchNormalization()(
          keras.layers.Conv2D(filters, 3, activation="relu")(x)))
      x = keras.layers.Dropout(drop)(x) if drop else x
  x = keras.layers.Flatten()(x)
  for units in (256, 128):
    x = keras.layers.Dropout(0.3)(keras.layers.Dense(units, activation="relu")(x))
  return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def original(name: str, manual_dir, image_size: int, batch_size: int, steps: int,
             warmup_steps: int) -> float:
  """The original setup: its ImageDataGenerator loader feeding its model, float32."""
  from bonefrac import bench_pipeline  # the bench extra
  from bonefrac_tfds.bone_fracture import layout
  entries = layout.find_layout(manual_dir).splits["train"]
  model = original_model(name, image_size)
  model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
  batches = _forever(lambda: bench_pipeline.seed_loader(entries, image_size=image_size,
                                                        batch_size=batch_size))
  return time_fit(model, batches, steps, warmup_steps, batch_size)


def _forever(make_pass):
  while True:
    yield from make_pass()


def bench_train(config: train_lib.TrainConfig, *, model_names: Sequence[str] = ("cnn", "vgg16"),
                precisions: Sequence[str] = ("float32", "auto"), xla: Sequence[bool] = (False, True),
                steps: int = 10, warmup_steps: int = 3, manual_dir: Optional[str] = None) -> Dict:
  """{"MODEL PRECISION [xla]": images/s, ...} plus ratios to the original setup when timed."""
  builder = input_pipeline.load_builder(config.dataset, config.data_dir)
  policies = list(dict.fromkeys(distribute.choose_precision(p) for p in precisions))
  result = {}
  for name in model_names:
    base = None
    if manual_dir:
      base = result[f"{name} original"] = original(name, manual_dir, config.image_size,
                                                   config.batch_size, steps, warmup_steps)
    for policy, jit in itertools.product(policies, xla):
      key = f"{name} {policy}{' xla' if jit else ''}"
      result[key] = ours(dataclasses.replace(config, model=name), builder, policy, jit, steps,
                         warmup_steps)
      if base:
        result[f"{key} / original"] = result[key] / base
  result["devices"] = ",".join(d.name for d in tf.config.list_logical_devices()
                               if d.device_type in ("GPU", "CPU"))
  return result
