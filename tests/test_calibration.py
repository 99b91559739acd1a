"""Platt scaling: fitted on validation, ranking kept, carried by the saved model."""

import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from bonefrac import calibration


def _overconfident(n=400, seed=0, lean=0.0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  return labels, 6.0 * (labels - 0.5 + rng.normal(0, 0.6, n)) + lean  # right ranking, too sure


def test_calibration_lowers_the_nll_and_keeps_the_ranking():
  labels, logits = _overconfident()
  temperature, bias = calibration.fit(labels, logits)
  assert temperature > 1.5 and abs(bias) < 0.3  # over-confident logits are softened
  before = calibration.negative_log_likelihood(labels, logits)
  assert calibration.negative_log_likelihood(labels, logits, temperature, bias) < before - 0.05
  after = calibration.calibrated(logits, temperature, bias)
  assert skm.roc_auc_score(labels, after) == skm.roc_auc_score(labels, calibration.sigmoid(logits))
  fresh_labels, fresh_logits = _overconfident(seed=1)  # and on images it was not fitted on
  section = calibration.report_section(temperature, bias, labels, logits, fresh_labels,
                                       fresh_logits)
  assert section["ece"]["after"] < section["ece"]["before"]
  assert section["brier"]["after"] < section["brier"]["before"]
  assert "15 equal-width bins" in section["ece_binning"]


def test_the_bias_corrects_a_model_that_leans_to_fracture():
  # Healthy images scored too high (the AVX2 run called 9 of 100 fractured at 0.5): a
  # temperature alone cannot move the 0.5 cut; the bias does, on images it was not fitted on.
  labels, logits = _overconfident(lean=3.0)
  temperature, bias = calibration.fit(labels, logits)
  assert -bias * temperature > 2  # the 0.5 cut moves most of the way back to the lean of 3
  fresh_labels, fresh_logits = _overconfident(seed=1, lean=3.0)
  before = np.mean((calibration.sigmoid(fresh_logits) >= 0.5) == fresh_labels)
  after = np.mean((calibration.calibrated(fresh_logits, temperature, bias) >= 0.5) == fresh_labels)
  assert after > before + 0.03
  section = calibration.report_section(temperature, bias, labels, logits, fresh_labels,
                                       fresh_logits)
  assert section["ece"]["after"] < section["ece"]["before"] / 2


def test_a_perfectly_separated_validation_split_does_not_send_the_temperature_to_zero():
  # Hard 0/1 targets would: the NLL keeps falling as T -> 0 (probabilities of exactly 0 and 1).
  labels = np.r_[np.ones(100), np.zeros(100)]
  logits = np.r_[np.linspace(2, 12, 100), -np.linspace(2, 12, 100)]
  temperature, bias = calibration.fit(labels, logits)
  assert 0.2 < temperature < 2 and abs(bias) < 0.5
  assert calibration.calibrated(12, temperature, bias) < 1 - 1e-6  # no probability saturates
  assert calibration.platt_targets([1, 1, 0]).tolist() == [0.75, 0.75, 1 / 3]


def test_expected_calibration_error_of_a_known_case():
  assert calibration.expected_calibration_error([1, 0, 1, 0], [.8, .8, .8, .8]) == pytest.approx(0.3)
  assert calibration.expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0


def _tiny_model():
  inputs = keras.Input((3,))
  logit = keras.layers.Dense(1, dtype="float32")(inputs)
  return keras.Model(inputs, keras.layers.Activation("sigmoid", dtype="float32")(logit))


def test_the_saved_model_outputs_the_calibrated_probability(tmp_path):
  model = _tiny_model()
  x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  logits = calibration.logit_model(model).predict(x, verbose=0).reshape(-1)
  calibrated = calibration.with_temperature(calibration.with_temperature(model, 3.0), 2.0, -0.5)
  assert sum(isinstance(layer, calibration.Temperature) for layer in calibrated.layers) == 1
  calibrated.save(tmp_path / "m.keras")
  loaded = keras.models.load_model(tmp_path / "m.keras")
  expected = calibration.sigmoid(logits / 2.0 - 0.5)
  np.testing.assert_allclose(loaded.predict(x, verbose=0).reshape(-1), expected, rtol=1e-5)
