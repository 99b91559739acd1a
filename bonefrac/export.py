"""Export for serving: a SavedModel whose `serving_default` takes encoded JPEG/PNG bytes."""

import json

import keras
import tensorflow as tf

from bonefrac import augment, input_pipeline, ood

SIGNATURE = "serving_default"
SETTINGS_SIGNATURE = "preprocessing"
OUTPUT = "fracture_probability"
OOD_SCORE, IN_DISTRIBUTION = "ood_score", "in_distribution"  # with an out-of-distribution reference


def export_saved_model(model: keras.Model, path: str) -> str:
  """Writes `model` as a SavedModel at `path`, ready for TensorFlow Serving.

  `serving_default(images)`: a [batch] string tensor of encoded JPEG or PNG files ->
  {"fracture_probability": [batch] float32}, and for a model with an out-of-distribution
  reference also "ood_score" (float32) and "in_distribution" (bool). Decoding, grey conversion
  and resizing run in the graph with the training pipeline's own `decode_and_resize`, with the
  settings the model carries (`augment.input_settings`), so a file scores as in evaluation. `preprocessing()`
  returns those settings as JSON ({"settings": string}).
  """
  settings = augment.input_settings(model)
  size, keep_aspect = settings["image_size"], settings["keep_aspect"]
  references = ood.layers_of(model)
  if references:
    both = ood.probability_and_features(model, references)

  def serve(images):
    pixels = tf.map_fn(
        lambda encoded: input_pipeline.decode_and_resize(encoded, size, keep_aspect=keep_aspect),
        images, fn_output_signature=tf.TensorSpec((size, size, 1), tf.uint8))
    if not references:
      return {OUTPUT: tf.reshape(tf.cast(model(pixels, training=False), tf.float32), [-1])}
    probabilities, *features = both(pixels, training=False)
    score = tf.reduce_max(tf.stack([r.distance(f) / r.threshold for r, f in zip(references, features)]),
                          axis=0)  # the largest distance over its threshold, as ood.scores
    return {OUTPUT: tf.reshape(tf.cast(probabilities, tf.float32), [-1]), OOD_SCORE: score,
            IN_DISTRIBUTION: score <= 1.0}

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint(SIGNATURE, serve,
                       input_signature=[tf.TensorSpec([None], tf.string, name="images")])
  archive.add_endpoint(SETTINGS_SIGNATURE, lambda: {"settings": tf.constant(json.dumps(settings))},
                       input_signature=[])
  archive.write_out(path, verbose=False)
  return path


def saved_input_settings(loaded) -> dict:
  """The input settings of a loaded export (`tf.saved_model.load`)."""
  return json.loads(loaded.signatures[SETTINGS_SIGNATURE]()["settings"].numpy())
