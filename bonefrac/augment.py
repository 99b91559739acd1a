"""Device-side augmentation, grey -> 3 channels and per-model normalisation, as Keras layers.

They run inside the model, on the accelerator; the random layers act in training only, so
inference sees exactly the same normalisation without augmentation.
"""

import dataclasses

import keras
from keras import layers

NORMALISATIONS = ("cnn", "vgg16")
F32 = "float32"  # these layers compute in float32 whatever the global precision policy


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Augmentation strengths; factors follow Keras' preprocessing layers."""

  rotation: float = 0.03  # fraction of a full turn: +-0.03 is about +-11 degrees
  zoom: float = 0.1
  translation: float = 0.05
  contrast: float = 0.2
  brightness: float = 0.1  # fraction of the 0-255 range
  horizontal_flip: bool = False  # laterality matters in radiographs; off by default


@keras.saving.register_keras_serializable(package="bonefrac")
class ToFloat(layers.Layer):
  """uint8 -> float32, keeping 0-255."""

  def call(self, images):
    return keras.ops.cast(images, "float32")


@keras.saving.register_keras_serializable(package="bonefrac")
class GreyToRGB(layers.Layer):
  """[..., 1] -> [..., 3] by repeating the channel (ImageNet models expect three)."""

  def call(self, images):
    return keras.ops.repeat(images, 3, axis=-1)

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], 3)


@keras.saving.register_keras_serializable(package="bonefrac")
class Normalize(layers.Layer):
  """0-255 RGB -> what the model expects: `/255` for the CNN, VGG16's caffe mode for VGG16.

  VGG16's ImageNet weights expect `keras.applications.vgg16.preprocess_input` on 0-255 values
  (BGR order, ImageNet means subtracted); the original project fed it [0, 1] instead.
  """

  def __init__(self, mode: str, **kwargs):
    super().__init__(**kwargs)
    if mode not in NORMALISATIONS:
      raise ValueError(f"normalisation {mode!r} is not one of {NORMALISATIONS}")
    self.mode = mode

  def call(self, images):
    images = keras.ops.cast(images, "float32")
    if self.mode == "vgg16":
      return keras.applications.vgg16.preprocess_input(images)
    return images / 255.0

  def get_config(self):
    return {**super().get_config(), "mode": self.mode}


def create_augmentation(config: AugmentConfig = AugmentConfig(), *, seed=None) -> keras.Sequential:
  """Random geometric and intensity changes on 0-255 float images, active in training only."""
  augmentations = [
      layers.RandomRotation(config.rotation, fill_mode="constant", seed=seed, dtype=F32),
      layers.RandomZoom(config.zoom, fill_mode="constant", seed=seed, dtype=F32),
      layers.RandomTranslation(config.translation, config.translation, fill_mode="constant",
                               seed=seed, dtype=F32),
      layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed, dtype=F32),
      layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed, dtype=F32),
  ]
  if config.horizontal_flip:
    augmentations.append(layers.RandomFlip("horizontal", seed=seed, dtype=F32))
  return keras.Sequential(augmentations, name="augmentation")


def create_preprocessing(normalisation: str, *, augment: AugmentConfig = None,
                         seed=None) -> keras.Sequential:
  """uint8 grey [b, h, w, 1] -> normalised float32 RGB [b, h, w, 3], augmented when training.

  Everything here computes in float32, also under a mixed-precision policy: augmentation and
  mean subtraction on 0-255 values lose precision in float16.
  """
  stack = [ToFloat(name="to_float", dtype=F32)]
  if augment is not None:
    stack.append(create_augmentation(augment, seed=seed))
  stack += [GreyToRGB(name="grey_to_rgb", dtype=F32),
            Normalize(normalisation, name=f"normalize_{normalisation}", dtype=F32)]
  return keras.Sequential(stack, name="preprocessing")
