"""Grad-CAM heat maps of the fracture probability (`plots.gradcam_figure` draws them).

The last convolutional layer is found automatically, also inside a nested model (VGG16's base):
the graph is then split into preprocessing, the base (with the convolution's output tapped)
and the head. Gradients are of the fracture probability, not the logit, and the map is
computed in float32 whatever the model's precision policy.
"""

from typing import Callable, Tuple

import keras
import numpy as np
import tensorflow as tf


def last_conv_layer(model: keras.Model) -> Tuple[keras.layers.Layer, keras.layers.Layer]:
  """(the layer of `model` that holds it, the last Conv2D): the same layer for a flat model,
  the nested model and its last Conv2D otherwise."""
  for layer in reversed(model.layers):
    if isinstance(layer, keras.layers.Conv2D):
      return layer, layer
    if isinstance(layer, keras.Model):
      convs = [inner for inner in layer.layers if isinstance(inner, keras.layers.Conv2D)]
      if convs:
        return layer, convs[-1]
  raise ValueError(f"model {model.name!r} has no Conv2D layer for Grad-CAM")


def conv_and_probability(model: keras.Model) -> Callable:
  """A function images -> (last conv feature maps, fracture probability), in one pass."""
  holder, conv = last_conv_layer(model)
  if holder is conv:
    tapped = keras.Model(model.inputs, [conv.output, model.output])
    return lambda images: tapped(images, training=False)
  # Nested: its tensors in the outer graph (Layer's properties, not the nested model's own).
  before = keras.Model(model.inputs, keras.layers.Layer.input.fget(holder))
  after = keras.Model(keras.layers.Layer.output.fget(holder), model.output)
  inner = keras.Model(holder.inputs, [conv.output, holder.output])

  def run(images):
    maps, features = inner(before(images, training=False), training=False)
    return maps, after(features, training=False)

  return run


def heatmaps(model: keras.Model, images: np.ndarray) -> np.ndarray:
  """Grad-CAM maps in [0, 1], float32 [n, h, w] at the images' size, for uint8 [n, h, w, 1]."""
  run = conv_and_probability(model)
  images = tf.convert_to_tensor(images)
  with tf.GradientTape() as tape:
    maps, probability = run(images)
  grads = tape.gradient(probability, maps)
  maps, grads = tf.cast(maps, tf.float32), tf.cast(grads, tf.float32)
  weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel
  cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))
  cam /= tf.reduce_max(cam, axis=(1, 2), keepdims=True) + 1e-8
  size = images.shape[1:3]
  return tf.image.resize(cam[..., None], size, method="bilinear")[..., 0].numpy()
