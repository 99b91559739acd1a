"""The two classifiers: the original custom CNN and the VGG16 transfer model, hyper-parameterised.

Both take uint8 grey images [batch, size, size, 1], run the device-side augmentation and their
own normalisation first (`bonefrac.augment`), and end in one sigmoid unit computed in float32
(the fracture probability), also under a mixed-precision policy. Builders return uncompiled
`keras.Model`s.
"""

import dataclasses
from typing import Optional, Sequence

import keras
from keras import layers

from bonefrac import augment

POOLINGS = ("flatten", "max", "avg")
VGG16_TOP_BLOCK = "block5"  # unfrozen by fine-tuning


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of either model's head (and the CNN's pooling before it)."""

  image_size: int = 224
  dropout: float = 0.3
  dense_units: Sequence[int] = (256, 128)
  pooling: str = "max"  # "flatten" is the original's; see BUILD_NOTES.md for why not by default
  augmentation: Optional[augment.AugmentConfig] = augment.AugmentConfig()
  bn_momentum: float = 0.9


def create_cnn(config: ModelConfig = ModelConfig(), *, seed=None) -> keras.Model:
  """The original custom CNN: conv 32 -> 64 -> 128 blocks (batch norm, max pool, dropout on
  the last two), then the dense head."""
  inputs, x = _inputs_and_preprocessing(config, "cnn", seed)
  for filters, drop in ((32, 0.0), (64, config.dropout), (128, config.dropout)):
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
    x = layers.BatchNormalization(momentum=config.bn_momentum)(x)
    x = layers.MaxPooling2D()(x)
    if drop:
      x = layers.Dropout(drop)(x)
  return keras.Model(inputs, head(x, config), name="cnn")


def create_vgg16(config: ModelConfig = ModelConfig(), *, weights="imagenet",
                 seed=None) -> keras.Model:
  """VGG16 (convolutional base frozen, `weights`: "imagenet", None or an .h5 path) + the head."""
  inputs, x = _inputs_and_preprocessing(config, "vgg16", seed)
  base = keras.applications.VGG16(include_top=False, weights=weights,
                                  input_shape=(config.image_size, config.image_size, 3))
  base.trainable = False
  x = base(x, training=False)  # frozen batch-norm-free base: inference mode throughout
  return keras.Model(inputs, head(x, config), name="vgg16")


def unfreeze_top_block(model: keras.Model) -> int:
  """Makes VGG16's last convolutional block trainable (fine-tuning); returns how many layers."""
  base = model.get_layer("vgg16")
  base.trainable = True
  count = 0
  for layer in base.layers:
    layer.trainable = layer.name.startswith(VGG16_TOP_BLOCK)
    count += layer.trainable
  return count


MODELS = {"cnn": create_cnn, "vgg16": create_vgg16}


def _inputs_and_preprocessing(config: ModelConfig, normalisation: str, seed):
  inputs = keras.Input((config.image_size, config.image_size, 1), dtype="uint8", name="image")
  x = augment.create_preprocessing(normalisation, augment=config.augmentation, seed=seed)(inputs)
  return inputs, x


def head(x, config: ModelConfig):
  """Pooling (or Flatten), the dense layers with dropout, and the float32 sigmoid output."""
  if config.pooling not in POOLINGS:
    raise ValueError(f"pooling {config.pooling!r} is not one of {POOLINGS}")
  x = {"flatten": layers.Flatten, "max": layers.GlobalMaxPooling2D,
       "avg": layers.GlobalAveragePooling2D}[config.pooling]()(x)
  for units in config.dense_units:
    x = layers.Dense(units, activation="relu")(x)
    x = layers.Dropout(config.dropout)(x)
  # float32 output: a float16 sigmoid saturates and its loss underflows.
  return layers.Dense(1, activation="sigmoid", dtype="float32", name="fracture_probability")(x)
