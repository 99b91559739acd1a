"""Out-of-distribution flags: is this image anything like what the model was trained on?

Two checks, both cheap:
- a DICOM header check: a file whose Modality is not a projection radiograph (CR, DX, RG; MR,
  CT, US, a secondary capture of a photo are not) is out of distribution whatever it scores;
- the Mahalanobis distance of the model's penultimate features (the input of its logit layer)
  to those of the training split, with a Ledoit-Wolf shrunk covariance (well conditioned with
  fewer images than features). The threshold is the 99th percentile of the validation split's
  distances, so about 1% of images like the validation split are flagged.

The reference (mean, precision matrix, threshold) lives in an `OutOfDistribution` layer
appended to the model: saved in `model.keras`, used by `bonefrac.predict` and by the export's
serving signature (an `ood_score` and an `in_distribution` output).
"""

from typing import Dict, Optional

import keras
import numpy as np
from sklearn.covariance import LedoitWolf

QUANTILE = 0.99
TRAIN_IMAGES = 5000  # of the training split, for the reference: enough for the covariance
MAX_DIMS = 2048  # wider features (a Flatten head without dense layers) get no reference
RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "DR", "PX"}
METHOD = ("Mahalanobis distance of the penultimate features to the training split's (Ledoit-Wolf "
          "covariance); flagged above the 99th percentile of the validation split's distances")


@keras.saving.register_keras_serializable(package="bonefrac")
class OutOfDistribution(keras.layers.Layer):
  """Passes the probability through; holds the training features' mean, precision matrix and
  the distance threshold, and scores features with them (`distance`)."""

  def __init__(self, dims: int, **kwargs):
    super().__init__(**kwargs)
    self.dims = int(dims)
    self.mean = self.add_weight(shape=(self.dims,), initializer="zeros", trainable=False, name="mean")
    self.precision = self.add_weight(shape=(self.dims, self.dims), initializer="zeros",
                                     trainable=False, name="precision")
    self.threshold = self.add_weight(shape=(), initializer="zeros", trainable=False, name="threshold")

  def call(self, inputs):
    return inputs[1]

  def compute_output_shape(self, input_shapes):
    return input_shapes[1]

  def distance(self, features):
    centred = keras.ops.cast(features, "float32") - self.mean
    squared = keras.ops.sum(keras.ops.matmul(centred, self.precision) * centred, axis=-1)
    return keras.ops.sqrt(keras.ops.maximum(squared, 0.0))

  def get_config(self):
    return {**super().get_config(), "dims": self.dims}


def features_tensor(model: keras.Model):
  """The input of the model's logit layer (`dense_logit`): its penultimate features."""
  return keras.layers.Layer.input.fget(model.get_layer("dense_logit"))


def feature_model(model: keras.Model) -> keras.Model:
  return keras.Model(model.inputs, features_tensor(model))


def fit(train_features: np.ndarray, validation_features: np.ndarray) -> Optional[Dict]:
  """{"mean", "precision", "threshold"} from the training features; the threshold from the
  validation features' distances. None for features wider than MAX_DIMS."""
  train_features = np.asarray(train_features, np.float64)
  if train_features.shape[1] > MAX_DIMS:
    return None
  estimate = LedoitWolf().fit(train_features)
  reference = {"mean": estimate.location_, "precision": estimate.precision_}
  reference["threshold"] = float(np.quantile(distances(reference, validation_features), QUANTILE))
  return reference


def report_section(reference: Optional[Dict], features: np.ndarray) -> Dict:
  """report.json's `out_of_distribution`: the method, threshold, and the share of the evaluated
  split in distribution."""
  if reference is None:
    return {"method": f"none: the features are wider than {MAX_DIMS}"}
  scores = distances(reference, features)
  return {"method": METHOD, "threshold": reference["threshold"],
          "evaluated_in_distribution": float(np.mean(scores <= reference["threshold"]))}


def distances(reference: Dict, features: np.ndarray) -> np.ndarray:
  centred = np.asarray(features, np.float64) - reference["mean"]
  return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, reference["precision"], centred), 0))


def with_reference(model: keras.Model, reference: Optional[Dict]) -> keras.Model:
  """The model with an OutOfDistribution layer holding `reference` at its end (the model as it
  is for None)."""
  if reference is None:
    return model
  features = features_tensor(model)
  layer = OutOfDistribution(int(reference["mean"].shape[0]), dtype="float32",
                            name="out_of_distribution")
  output = layer([features, model.output])
  layer.set_weights([reference["mean"].astype(np.float32), reference["precision"].astype(np.float32),
                     np.float32(reference["threshold"])])
  return keras.Model(model.inputs, output, name=model.name)


def layer_of(model: keras.Model) -> Optional[OutOfDistribution]:
  for layer in model.layers:
    if isinstance(layer, OutOfDistribution):
      return layer
  return None


def scorer(model: keras.Model):
  """(images -> (probabilities, distances) in one pass, the threshold), or None for a model
  without a reference."""
  layer = layer_of(model)
  if layer is None:
    return None
  both = keras.Model(model.inputs, [model.output, features_tensor(model)])
  mean, precision, threshold = layer.get_weights()
  reference = {"mean": mean, "precision": precision}

  def score(images):
    probabilities, features = both.predict_on_batch(images)
    return np.asarray(probabilities).reshape(-1), distances(reference, features)

  return score, float(threshold)


def dicom_modality_problem(data: bytes) -> Optional[str]:
  """Why a DICOM file's header says it is not a projection radiograph, or None."""
  from bonefrac_tfds.bone_fracture import dicom
  if not dicom.is_dicom(data) or not dicom.available():
    return None
  import io
  import pydicom
  try:
    header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
  except Exception:  # the pixel reader reports broken files
    return None
  modality = str(header.get("Modality", "") or "").upper()
  if modality and modality not in RADIOGRAPH_MODALITIES:
    return f"DICOM Modality {modality} is not a radiograph"
  return None
