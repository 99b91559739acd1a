"""Out-of-distribution flags: is this image anything like what the model was trained on?

Two checks, both cheap:
- a DICOM header check: a file whose Modality is not a projection radiograph (CR, DX, RG; MR,
  CT, US, a secondary capture of a photo are not) is out of distribution whatever it scores;
- the Mahalanobis distance of the model's own features to those of the training split, with a
  Ledoit-Wolf shrunk covariance (well conditioned with fewer images than features), at up to
  three layers (Lee et al., 2018, score several): the first convolutional block's channel
  means and spreads (texture, sharpness, noise: where the network's layers are its own, the
  custom CNN; VGG16's are inside its base), the pooled convolutional features and the
  penultimate ones (the input of the logit layer). Each distance is divided by its validation
  99th percentile; `ood_score` is the largest such ratio, scaled once more so that 99% of the
  validation split scores at most 1. Above 1: flagged. Each layer catches what the others
  miss (BUILD_NOTES.md).

The references (mean, precision matrix, threshold) live in `OutOfDistribution` layers appended
to the model: saved in `model.keras`, used by `bonefrac.predict` and by the export's serving
signature (an `ood_score` and an `in_distribution` output).
"""

import io
from typing import Dict, List, Optional

import keras
import numpy as np
from sklearn.covariance import LedoitWolf

QUANTILE = 0.99
TRAIN_IMAGES = 5000  # of the training split, for the reference: enough for the covariance
MAX_DIMS = 2048  # wider features (a Flatten head) get no reference
RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "DR", "PX"}
METHOD = ("Mahalanobis distances (Ledoit-Wolf covariance) to the training split's features at "
          "each layer in thresholds (first_block: channel means and spreads of the first "
          "convolutional block; pooled; penultimate); each threshold is its layer's 99th "
          "percentile on the validation split, scaled so that 99% of validation has every "
          "distance within its threshold; ood_score is the largest distance over its threshold")


@keras.saving.register_keras_serializable(package="bonefrac")
class OutOfDistribution(keras.layers.Layer):
  """Passes the probability through; holds one feature layer's (`tap`) training mean,
  precision matrix and distance threshold, and scores features with them (`distance`)."""

  def __init__(self, dims: int, tap: str = "penultimate", **kwargs):
    super().__init__(**kwargs)
    self.dims, self.tap = int(dims), tap
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
    return {**super().get_config(), "dims": self.dims, "tap": self.tap}


@keras.saving.register_keras_serializable(package="bonefrac")
class ChannelMoments(keras.layers.Layer):
  """Feature maps -> each channel's mean and standard deviation over the image (a texture
  summary: how bright, how busy, how sharp)."""

  def call(self, inputs):
    inputs = keras.ops.cast(inputs, "float32")
    return keras.ops.concatenate([keras.ops.mean(inputs, axis=(1, 2)),
                                  keras.ops.std(inputs, axis=(1, 2))], axis=-1)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], 2 * input_shape[-1])


def feature_taps(model: keras.Model) -> Dict:
  """{"first_block": the channel moments of the first max pooling layer's output (where the
  model's own layers have one: the custom CNN), "pooled": the output of the head's pooling
  layer (if the model names one "pooled"), "penultimate": the input of its logit layer},
  without repeating one tensor twice."""
  taps = {}
  pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
  if pools:
    taps["first_block"] = ChannelMoments(dtype="float32")(keras.layers.Layer.output.fget(pools[0]))
  if "pooled" in [layer.name for layer in model.layers]:
    taps["pooled"] = keras.layers.Layer.output.fget(model.get_layer("pooled"))
  penultimate = keras.layers.Layer.input.fget(model.get_layer("dense_logit"))
  if not any(t is penultimate for t in taps.values()):
    taps["penultimate"] = penultimate
  return taps


def features_model(model: keras.Model) -> keras.Model:
  """images -> {tap: features}."""
  return keras.Model(model.inputs, feature_taps(model))


def fit(train: Dict[str, np.ndarray], validation: Dict[str, np.ndarray]) -> Dict[str, Dict]:
  """{tap: {"mean", "precision", "threshold"}} from the training features, each threshold from
  the validation features' distances; taps wider than MAX_DIMS are left out."""
  references = {}
  for tap, features in train.items():
    features = np.asarray(features, np.float64)
    if features.shape[1] > MAX_DIMS:
      continue
    estimate = LedoitWolf().fit(features)
    reference = {"mean": estimate.location_, "precision": estimate.precision_}
    reference["threshold"] = float(np.quantile(distances(reference, validation[tap]), QUANTILE))
    references[tap] = reference
  return _jointly(references, validation)


def _jointly(references: Dict[str, Dict], validation: Dict[str, np.ndarray]) -> Dict[str, Dict]:
  """The thresholds scaled by one factor so that the 99th percentile of the validation split's
  combined score (its largest ratio) is 1: each layer at its own 99th percentile would flag up
  to 1% of in-distribution images per layer."""
  if len(references) > 1:
    factor = max(float(np.quantile(scores(references, validation), QUANTILE)), 1.0)
    for reference in references.values():
      reference["threshold"] *= factor
  return references


def distances(reference: Dict, features: np.ndarray) -> np.ndarray:
  centred = np.asarray(features, np.float64) - reference["mean"]
  return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, reference["precision"], centred), 0))


def scores(references: Dict[str, Dict], features: Dict[str, np.ndarray]) -> np.ndarray:
  """The largest distance over its threshold, per image (above 1: out of distribution)."""
  ratios = [distances(r, features[tap]) / max(r["threshold"], 1e-12) for tap, r in references.items()]
  return np.max(ratios, axis=0)


def report_section(references: Dict[str, Dict], features: Dict[str, np.ndarray]) -> Dict:
  """report.json's `out_of_distribution`: the method, thresholds, and the share of the
  evaluated split in distribution."""
  if not references:
    return {"method": f"none: the features are wider than {MAX_DIMS}"}
  return {"method": METHOD, "thresholds": {tap: r["threshold"] for tap, r in references.items()},
          "evaluated_in_distribution": float(np.mean(scores(references, features) <= 1.0))}


def with_reference(model: keras.Model, references: Dict[str, Dict]) -> keras.Model:
  """The model with an OutOfDistribution layer per reference at its end."""
  if not references:
    return model
  taps, output = feature_taps(model), model.output
  for tap, reference in references.items():
    layer = OutOfDistribution(int(reference["mean"].shape[0]), tap, dtype="float32",
                              name=f"out_of_distribution_{tap}")
    output = layer([taps[tap], output])
    layer.set_weights([reference["mean"].astype(np.float32),
                       reference["precision"].astype(np.float32), np.float32(reference["threshold"])])
  return keras.Model(model.inputs, output, name=model.name)


def probability_and_features(model: keras.Model, found: List[OutOfDistribution]) -> keras.Model:
  """images -> [probability, the features each of `found` scores] in one pass."""
  taps = feature_taps(model)
  return keras.Model(model.inputs, [model.output] + [taps[layer.tap] for layer in found])


def layers_of(model: keras.Model) -> List[OutOfDistribution]:
  return [layer for layer in model.layers if isinstance(layer, OutOfDistribution)]


def scorer(model: keras.Model):
  """images -> (probabilities, ood scores) in one pass, or None for a model without references."""
  found = layers_of(model)
  if not found:
    return None
  both = probability_and_features(model, found)
  references = {layer.tap: dict(zip(("mean", "precision", "threshold"), layer.get_weights()))
                for layer in found}

  def score(images):
    probabilities, *features = both.predict_on_batch(images)
    by_tap = {layer.tap: f for layer, f in zip(found, features)}
    return np.asarray(probabilities).reshape(-1), scores(references, by_tap)

  return score


def dicom_modality_problem(data: bytes) -> Optional[str]:
  """Why a DICOM file's header says it is not a projection radiograph, or None."""
  from bonefrac_tfds.bone_fracture import dicom
  if not dicom.is_dicom(data) or not dicom.available():
    return None
  import pydicom  # the dicom extra, present since dicom.available()
  try:
    header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
  except Exception:  # the pixel reader reports broken files
    return None
  modality = str(header.get("Modality", "") or "").upper()
  if modality and modality not in RADIOGRAPH_MODALITIES:
    return f"DICOM Modality {modality} is not a radiograph"
  return None
