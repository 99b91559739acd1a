"""Platt scaling: probabilities that mean what they say, fitted on validation, kept in the model.

A network trained to a near-perfect ranking is often over-confident, or leans to one class
(the healthy images it calls 0.9 fractured). Platt scaling (1999) maps its logit z to
z / T + b, a temperature T > 0 and a bias b fitted by the negative log-likelihood of the
validation split; T alone is temperature scaling (Guo et al., 2017), which cannot move a model
that leans. T > 0 keeps the ranking: AUC and every ranking figure stay as they were. The targets
are Platt's smoothed ones (`platt_targets`), so that a validation split the model separates
perfectly does not send T to 0. The `Temperature` layer sits between the model's logit and its
sigmoid, so `model.keras`, `export/` and `bonefrac.predict` all give the calibrated probability.
Why both parameters: BUILD_NOTES.md, "Numbers that hold on new data".
"""

from typing import Dict, Tuple

import keras
import numpy as np
from scipy import optimize

from bonefrac import stats

ECE_BINS = 15
BINNING = (f"{ECE_BINS} equal-width bins of the fracture probability; the gap between the mean "
           "probability and the share fractured in each bin, weighted by the bin's images")


@keras.saving.register_keras_serializable(package="bonefrac")
class Temperature(keras.layers.Layer):
  """logit -> logit / temperature + bias (constants fitted after training, saved in the config;
  models saved before the bias have none)."""

  def __init__(self, temperature: float = 1.0, bias: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.temperature, self.bias = float(temperature), float(bias)

  def call(self, logits):
    return logits / self.temperature + self.bias

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "temperature": self.temperature, "bias": self.bias}


def logit_model(model: keras.Model) -> keras.Model:
  """The model up to the logit its final sigmoid squashes (the same weights)."""
  from bonefrac import gradcam  # imports TensorFlow
  return keras.Model(model.inputs, gradcam.logit(model))


def with_temperature(model: keras.Model, temperature: float, bias: float = 0.0) -> keras.Model:
  """The model with its logit mapped to logit / temperature + bias before the sigmoid; an
  earlier Temperature layer, if any, is replaced rather than stacked."""
  logit = logit_model(model).output
  producer = logit._keras_history.operation if hasattr(logit, "_keras_history") else None
  if isinstance(producer, Temperature):
    logit = keras.layers.Layer.input.fget(producer)
  scaled = Temperature(temperature, bias, dtype="float32", name="temperature")(logit)
  output = keras.layers.Activation("sigmoid", dtype="float32",
                                   name="calibrated_fracture_probability")(scaled)
  return keras.Model(model.inputs, output, name=model.name)


def sigmoid(logits) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-np.asarray(logits, float)))


def calibrated(logits, temperature: float = 1.0, bias: float = 0.0) -> np.ndarray:
  """The probabilities the calibrated model gives (as the Temperature layer and a sigmoid)."""
  return sigmoid(np.asarray(logits, float) / temperature + bias)


def negative_log_likelihood(targets, logits, temperature: float = 1.0, bias: float = 0.0) -> float:
  """The mean binary cross-entropy of sigmoid(logits / temperature + bias) against `targets`
  (labels, or soft targets in 0-1), computed stably."""
  targets, z = np.asarray(targets, float), np.asarray(logits, float) / temperature + bias
  return float(np.mean(np.logaddexp(0.0, z) - targets * z))


def platt_targets(labels) -> np.ndarray:
  """Platt's (1999) smoothed targets: (N+ + 1)/(N+ + 2) for positives, 1/(N- + 2) for
  negatives. With hard 0/1 targets, a validation split the model separates perfectly drives
  the fitted temperature to 0 (every probability to exactly 0 or 1); these keep it finite."""
  labels = np.asarray(labels).astype(int)
  positives, negatives = int(labels.sum()), int(labels.size - labels.sum())
  return np.where(labels == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))


def fit(labels, logits) -> Tuple[float, float]:
  """The temperature (0.05-20) and bias (-20 to 20) that minimise the NLL of Platt's targets."""
  targets = platt_targets(labels)
  found = optimize.minimize(
      lambda p: negative_log_likelihood(targets, logits, float(np.exp(p[0])), float(p[1])),
      x0=[0.0, 0.0], method="L-BFGS-B", bounds=[(np.log(0.05), np.log(20.0)), (-20.0, 20.0)])
  return float(np.exp(found.x[0])), float(found.x[1])


def brier_score(labels, probabilities) -> float:
  return float(np.mean((np.asarray(probabilities, float) - np.asarray(labels, float)) ** 2))


def expected_calibration_error(labels, probabilities, bins: int = ECE_BINS) -> float:
  """ECE over `bins` equal-width bins (see BINNING)."""
  mean, share, count = stats.reliability_bins(labels, probabilities, bins)
  return float((count * np.abs(mean - share)).sum() / max(count.sum(), 1))


def report_section(temperature: float, bias: float, validation_labels, validation_logits, labels,
                   logits) -> Dict:
  """report.json's `calibration`: the temperature and bias, the validation NLL they lowered (of
  the targets they were fitted to), and the evaluated split's Brier score and ECE before and
  after."""
  before, after = sigmoid(logits), calibrated(logits, temperature, bias)
  targets = platt_targets(validation_labels)
  return {
      "method": ("Platt scaling (logit / temperature + bias), fitted by the validation split's "
                 "negative log-likelihood of Platt's smoothed targets"),
      "temperature": temperature, "bias": bias, "ece_binning": BINNING,
      "validation_nll": {"before": negative_log_likelihood(targets, validation_logits),
                         "after": negative_log_likelihood(targets, validation_logits, temperature,
                                                          bias)},
      "brier": {"before": brier_score(labels, before), "after": brier_score(labels, after)},
      "ece": {"before": expected_calibration_error(labels, before),
              "after": expected_calibration_error(labels, after)},
  }
