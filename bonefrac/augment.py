"""Device-side augmentation, grey -> 3 channels and per-model normalisation, as Keras layers.

They run inside the model, on the accelerator; the random layers act in training only, so
inference sees exactly the same normalisation without augmentation. VGG16 gets the grey image
three times, as its ImageNet weights expect; the CNN, trained from scratch, gets the grey image
and two local-contrast channels (`LocalContrast`).
"""

import dataclasses
import math

import keras
import numpy as np
from keras import layers

NORMALISATIONS = ("cnn", "vgg16")
F32 = "float32"  # these layers compute in float32 whatever the global precision policy
# The CNN's local-contrast channels: box sizes in pixels at the model's input size, and a gain
# that brings a fracture line's contrast (about 0.1-0.3 of the 0-1 range) to order one.
CONTRAST_SIZES = (5, 15)
CONTRAST_GAIN = 8.0


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
class InputSettings(layers.Layer):
  """The identity, carrying how the model's input images are made from a file: the side of
  the square, padding (`keep_aspect`) or stretching to it, and the normalisation inside.

  It is saved with the model, so that export and `bonefrac.predict` read these settings from
  the model (`input_settings`) and serve images exactly as training and evaluation made them.
  """

  def __init__(self, image_size: int, keep_aspect: bool = False, normalisation: str = "cnn",
               **kwargs):
    super().__init__(**kwargs)
    self.image_size, self.keep_aspect = int(image_size), bool(keep_aspect)
    self.normalisation = normalisation

  def call(self, images):
    return images

  def compute_output_shape(self, input_shape):
    return input_shape

  def settings(self) -> dict:
    return {"image_size": self.image_size, "keep_aspect": self.keep_aspect,
            "normalisation": self.normalisation}

  def get_config(self):
    return {**super().get_config(), **self.settings()}


def input_settings(model: keras.Model) -> dict:
  """The model's `InputSettings` as a dict; for a model saved without them (bonefrac < 0.2),
  its input size, stretched, as those models were trained unless --keep_aspect was given."""
  for layer in model.layers:
    if isinstance(layer, InputSettings):
      return layer.settings()
  return {"image_size": int(model.inputs[0].shape[1]), "keep_aspect": False,
          "normalisation": "cnn" if model.name == "cnn" else "vgg16"}


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
class LocalContrast(layers.Layer):
  """[..., 1] grey in 0-1 -> [..., 1 + len(sizes)]: the image, then `gain` x (image - its mean
  over a `size` x `size` box) for each size: fine and coarse edge enhancement, where a thin
  fracture line stands out from the bright cortex whatever the exposure (why: BUILD_NOTES.md,
  "The custom CNN's recipe").
  """

  def __init__(self, sizes=CONTRAST_SIZES, gain=CONTRAST_GAIN, **kwargs):
    super().__init__(**kwargs)
    self.sizes, self.gain = tuple(sizes), float(gain)

  def call(self, images):
    channels = [images]
    for size in self.sizes:
      channels.append(self.gain * (images - box_mean(images, size)))
    return keras.ops.concatenate(channels, axis=-1)

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], 1 + len(self.sizes))

  def get_config(self):
    return {**super().get_config(), "sizes": self.sizes, "gain": self.gain}


def box_mean(images, size: int):
  """The mean over a `size` x `size` box around each pixel of [b, h, w, 1] images, over the
  pixels inside the image only (as `average_pool` with "same" padding).

  Two 1-D convolutions: on a CPU, far cheaper than a 15x15 `average_pool` (BUILD_NOTES.md).
  """
  ops = keras.ops
  vertical, horizontal = ops.ones((size, 1, 1, 1)) / size, ops.ones((1, size, 1, 1)) / size

  def box_sum(x):
    return ops.conv(ops.conv(x, vertical, padding="same"), horizontal, padding="same")

  shape = ops.shape(images)
  inside = box_sum(ops.ones((1, shape[1], shape[2], 1)))  # the share of each box in the image
  return box_sum(images) / inside


@keras.saving.register_keras_serializable(package="bonefrac")
class Normalize(layers.Layer):
  """0-255 values -> what the model expects: `/255` for the CNN, VGG16's caffe mode for VGG16.

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


@keras.saving.register_keras_serializable(package="bonefrac")
class RandomAffine(layers.Layer):
  """Random rotation, zoom and translation as one affine warp, in training only.

  Keras' RandomRotation, RandomZoom and RandomTranslation resample the image one after the
  other; three bilinear interpolations blur a 1-3 px fracture line far more than one.
  Factors follow those layers: rotation in fractions of a full turn, zoom and translation in
  fractions of the image size.
  """

  def __init__(self, rotation=0.0, zoom=0.0, translation=0.0, seed=None, **kwargs):
    super().__init__(**kwargs)
    self.rotation, self.zoom, self.translation, self.seed = rotation, zoom, translation, seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  def call(self, images, training=None):
    if not training:
      return images
    ops = keras.ops
    shape = ops.shape(images)
    height, width = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")

    angle, scale, shift_x, shift_y = self.random_parameters(shape[0])
    shift_x, shift_y = shift_x * width, shift_y * height
    cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    zeros = ops.zeros_like(angle)
    # Maps each output pixel to where it is read in the input: about the centre.
    transform = ops.stack([cos, -sin, cx - cos * cx + sin * cy + shift_x,
                           sin, cos, cy - sin * cx - cos * cy + shift_y, zeros, zeros], axis=1)
    return ops.image.affine_transform(images, transform, interpolation="bilinear",
                                      fill_mode="constant", fill_value=0)

  def random_parameters(self, batch):
    """Per-image angle (radians), scale, and shifts (fractions of the width and height)."""
    def uniform(limit):
      return keras.random.uniform((batch,), -limit, limit, seed=self.seed_generator)

    return (uniform(self.rotation) * 2.0 * math.pi, 1.0 + uniform(self.zoom),
            uniform(self.translation), uniform(self.translation))

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom,
            "translation": self.translation, "seed": self.seed}


def create_augmentation(config: AugmentConfig = AugmentConfig(), *, seed=None) -> keras.Sequential:
  """Random geometric and intensity changes on 0-255 float images, active in training only.

  Each random layer gets its own seed derived from `seed`: layers given one integer seed draw
  the same uniform numbers, so contrast, brightness and the rotation angle would move together.
  """
  augmentations = [
      RandomAffine(config.rotation, config.zoom, config.translation, seed=layer_seed(seed, 0),
                   dtype=F32, name="random_affine"),
      layers.RandomContrast(config.contrast, value_range=(0, 255), seed=layer_seed(seed, 1),
                            dtype=F32, name="random_contrast"),
      layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=layer_seed(seed, 2),
                              dtype=F32, name="random_brightness"),
  ]
  if config.horizontal_flip:
    augmentations.append(layers.RandomFlip("horizontal", seed=layer_seed(seed, 3), dtype=F32,
                                           name="random_flip"))
  return keras.Sequential(augmentations, name="augmentation")


def layer_seed(seed, index: int):
  """An independent integer seed for the `index`-th random layer (None stays None: unseeded)."""
  if seed is None:
    return None
  return int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0] >> 1)


def create_preprocessing(normalisation: str, *, augment: AugmentConfig = None,
                         seed=None) -> keras.Sequential:
  """uint8 grey [b, h, w, 1] -> normalised float32 [b, h, w, 3], augmented when training.

  "vgg16": the grey image as RGB in VGG16's caffe mode; "cnn": grey in 0-1 and its two
  local-contrast channels. Everything here computes in float32, also under a mixed-precision
  policy: augmentation and mean subtraction on 0-255 values lose precision in float16.
  """
  stack = [ToFloat(name="to_float", dtype=F32)]
  if augment is not None:
    stack.append(create_augmentation(augment, seed=seed))
  if normalisation == "cnn":
    stack += [Normalize("cnn", name="normalize_cnn", dtype=F32),
              LocalContrast(name="local_contrast", dtype=F32)]
  else:
    stack += [GreyToRGB(name="grey_to_rgb", dtype=F32),
              Normalize(normalisation, name=f"normalize_{normalisation}", dtype=F32)]
  return keras.Sequential(stack, name="preprocessing")
