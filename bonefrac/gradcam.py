"""Grad-CAM heat maps of the fracture probability (`plots.gradcam_figure` draws them).

The last convolutional layer is found automatically, also inside a nested model (VGG16's base):
the graph is then split into preprocessing, the base (with the convolution's output tapped)
and the head. Gradients are of the logit (the final sigmoid's input): the probability's
gradient is the same times p(1 - p), which cancels when each map is scaled to its maximum but is
exactly 0 in float32 once a confident model outputs 1.0. The map is computed in float32
whatever the model's precision policy.
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


def logit(model: keras.Model):
  """The tensor the model's final sigmoid squashes; the model's output if it ends otherwise."""
  for layer in reversed(model.layers):  # the last sigmoid: layers after it pass it through
    if isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "sigmoid":
      return keras.layers.Layer.input.fget(layer)  # in the model's graph
  return model.output


def conv_and_logit(model: keras.Model) -> Callable:
  """A function images -> (last conv feature maps, fracture logit), in one pass."""
  holder, conv = last_conv_layer(model)
  if holder is conv:
    tapped = keras.Model(model.inputs, [conv.output, logit(model)])
    return lambda images: tapped(images, training=False)
  # Nested: its tensors in the outer graph (Layer's properties, not the nested model's own).
  before = keras.Model(model.inputs, keras.layers.Layer.input.fget(holder))
  after = keras.Model(keras.layers.Layer.output.fget(holder), logit(model))
  inner = keras.Model(holder.inputs, [conv.output, holder.output])

  def run(images):
    maps, features = inner(before(images, training=False), training=False)
    return maps, after(features, training=False)

  return run


def heatmaps(model: keras.Model, images: np.ndarray) -> np.ndarray:
  """Grad-CAM maps in [0, 1], float32 [n, h, w] at the images' size, for uint8 [n, h, w, 1]."""
  run = conv_and_logit(model)
  images = tf.convert_to_tensor(images)
  with tf.GradientTape() as tape:
    maps, score = run(images)
  grads = tape.gradient(score, maps)
  maps, grads = tf.cast(maps, tf.float32), tf.cast(grads, tf.float32)
  weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel
  cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))
  cam /= tf.reduce_max(cam, axis=(1, 2), keepdims=True) + 1e-8
  size = images.shape[1:3]
  return tf.image.resize(cam[..., None], size, method="bilinear")[..., 0].numpy()
