"""Export for serving: a SavedModel whose `serving_default` takes encoded JPEG/PNG bytes."""

import keras
import tensorflow as tf

from bonefrac import input_pipeline

SIGNATURE = "serving_default"
OUTPUT = "fracture_probability"


def export_saved_model(model: keras.Model, path: str, image_size: int) -> str:
  """Writes `model` as a SavedModel at `path`, ready for TensorFlow Serving.

  `serving_default(images)`: a [batch] string tensor of encoded JPEG or PNG files ->
  {"fracture_probability": [batch] float32}. Decoding, grey conversion and resizing run in the
  graph with the training pipeline's own `decode_and_resize`, so a file scores as in evaluation.
  """
  def serve(images):
    pixels = tf.map_fn(lambda encoded: input_pipeline.decode_and_resize(encoded, image_size),
                       images, fn_output_signature=tf.TensorSpec((image_size, image_size, 1), tf.uint8))
    probabilities = model(pixels, training=False)
    return {OUTPUT: tf.reshape(tf.cast(probabilities, tf.float32), [-1])}

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint(SIGNATURE, serve,
                       input_signature=[tf.TensorSpec([None], tf.string, name="images")])
  archive.write_out(path, verbose=False)
  return path
