"""What a run reports beyond its metrics: calibration, intervals, operating points, the model card."""

import keras
import pytest
from tensorboard.backend.event_processing import event_accumulator

from bonefrac import calibration


def test_the_report_and_model_card_carry_calibration_operating_points_and_intervals(cnn_run):
  workdir, report = cnn_run
  calibrated = report["calibration"]
  assert calibrated["validation_nll"]["after"] <= calibrated["validation_nll"]["before"] + 1e-9
  assert set(calibrated["brier"]) == set(calibrated["ece"]) == {"before", "after"}
  assert "Youden" in report["balanced"]["rule"] and "Clopper" in report["high_sensitivity"]["rule"]
  assert "cluster bootstrap" in report["ci95"]["method"]  # the synthetic config has groups
  for metric in ("accuracy", "sensitivity", "specificity", "f1", "auc", "pr_auc"):
    assert report["ci95"][metric][0] <= report[metric] <= report["ci95"][metric][1], metric
  model = keras.models.load_model(workdir / "model.keras", compile=False)
  temperatures = [x.temperature for x in model.layers if isinstance(x, calibration.Temperature)]
  assert temperatures == [pytest.approx(calibrated["temperature"])]
  events = event_accumulator.EventAccumulator(str(workdir / "logs" / "evaluation"),
                                              size_guidance={"images": 0, "tensors": 0})
  events.Reload()
  assert "reliability_diagram" in events.Tags()["images"] + events.Tags()["tensors"]
  card = (workdir / "model_card.md").read_text()
  for section in ("Model details", "Intended use", "Training data", "Training settings",
                  "Quantitative analysis", "Limitations"):
    assert f"## {section}" in card, section
  assert "is a medical device" in card and "say nothing about real patients" in card
  sizes = ", ".join(f"{name} {n}" for name, n in report["data"]["splits"].items())
  assert f"images per split: {sizes}" in card and f"version {report['data']['version']}" in card
  assert f"| default | {report['threshold']:.3f} | {report['accuracy']:.3f} [" in card
  assert "No test image shares a duplicate group with train" in card
  assert f"temperature {calibrated['temperature']:.3f}" in card
