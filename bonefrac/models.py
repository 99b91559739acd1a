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
  keep_aspect: bool = False  # how files become the input square: padded, or stretched
  dropout: float = 0.3
  dense_units: Sequence[int] = (256, 128)
  pooling: str = "max"  # "flatten" is the original's; see BUILD_NOTES.md for why not by default
  augmentation: Optional[augment.AugmentConfig] = augment.AugmentConfig()
  bn_momentum: float = 0.9
  # The CNN's trunk (see BUILD_NOTES.md, "The custom CNN's recipe", for the measurements):
  stem_stride: int = 2  # the first conv strides: a quarter of the compute at 224 px
  extra_convs: int = 1  # 3x3 convs after the last block: a receptive field wider than a bone
  conv_dropout: float = 0.1  # after the second and third blocks (the original: the head's rate)
  # Batch statistics over the global batch rather than each replica's share: training then
  # computes the same whatever the number of replicas, at no cost measured on a CPU
  # (BUILD_NOTES.md, "Correctness review").
  sync_batch_norm: bool = True
  # A linear read-out of the pooled features added to the dense layers' output: with it the
  # 256-128 head learns from the start (BUILD_NOTES.md, "The custom CNN's recipe").
  linear_skip: bool = True


def create_cnn(config: ModelConfig = ModelConfig(), *, seed=None) -> keras.Model:
  """The original custom CNN: conv 32 -> 64 -> 128 blocks (batch norm, max pool, dropout on
  the last two), `extra_convs` more 3x3 convs at the last block's resolution, the dense head.

  `stem_stride=1, extra_convs=0, pooling="flatten", conv_dropout=dropout` is the original.
  """
  inputs, x = _inputs_and_preprocessing(config, "cnn", seed)
  for i, filters in enumerate((32, 64, 128)):
    x = _conv_bn(x, filters, config, strides=config.stem_stride if i == 0 else 1)
    x = layers.MaxPooling2D()(x)
    if i and config.conv_dropout:
      x = layers.Dropout(config.conv_dropout)(x)
  for _ in range(config.extra_convs):
    x = _conv_bn(x, 128, config)
  return keras.Model(inputs, head(x, config), name="cnn")


def _conv_bn(x, filters: int, config: ModelConfig, strides: int = 1):
  """Conv 3x3 + ReLU, then batch norm, in the original's order."""
  x = layers.Conv2D(filters, 3, strides=strides, activation="relu", padding="same")(x)
  return layers.BatchNormalization(momentum=config.bn_momentum,
                                   synchronized=config.sync_batch_norm)(x)


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
  x = augment.InputSettings(config.image_size, config.keep_aspect, normalisation,
                            name="input_settings")(inputs)
  x = augment.create_preprocessing(normalisation, augment=config.augmentation, seed=seed)(x)
  return inputs, x


def head(x, config: ModelConfig):
  """Pooling (or Flatten), the dense layers with dropout, and the float32 sigmoid output."""
  if config.pooling not in POOLINGS:
    raise ValueError(f"pooling {config.pooling!r} is not one of {POOLINGS}")
  pooled = {"flatten": layers.Flatten, "max": layers.GlobalMaxPooling2D,
            "avg": layers.GlobalAveragePooling2D}[config.pooling](name="pooled")(x)
  hidden = pooled
  for units in config.dense_units:
    hidden = layers.Dense(units, activation="relu")(hidden)
    hidden = layers.Dropout(config.dropout)(hidden)
  # float32 logits and output: a float16 sigmoid saturates and its loss underflows.
  logit = layers.Dense(1, dtype="float32", name="dense_logit")(hidden)
  if config.linear_skip and config.dense_units:
    linear = layers.Dense(1, dtype="float32", name="linear_logit")(pooled)
    logit = layers.Add(dtype="float32", name="logit")([logit, linear])
  return layers.Activation("sigmoid", dtype="float32", name="fracture_probability")(logit)
