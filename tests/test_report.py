"""Operating points, the high-sensitivity threshold, plots and the comparison table."""

import numpy as np
import pytest

from bonefrac import compare, report

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
PROBS = np.array([0.1, 0.2, 0.6, 0.3, 0.4, 0.7, 0.8, 0.9])


def test_operating_point_counts_and_ratios():
  point = report.operating_point(LABELS, PROBS, 0.5)
  assert point["confusion_matrix"] == [[3, 1], [1, 3]]
  assert point["accuracy"] == 0.75 and point["sensitivity"] == 0.75 and point["specificity"] == 0.75
  assert point["precision"] == 0.75 and point["f1"] == pytest.approx(0.75)


def test_high_sensitivity_threshold_is_the_highest_that_reaches_the_target():
  threshold = report.threshold_for_sensitivity(LABELS, PROBS, 0.95)
  assert threshold == pytest.approx(0.4)  # the lowest-scored fracture must still be caught
  assert report.operating_point(LABELS, PROBS, threshold)["sensitivity"] == 1.0


def test_evaluate_adds_aucs_and_the_validation_chosen_point():
  result = report.evaluate(LABELS, PROBS, validation_labels=LABELS, validation_probabilities=PROBS)
  assert result["auc"] == pytest.approx(15 / 16)  # one pair of 16 misordered
  assert result["high_sensitivity"]["threshold"] == pytest.approx(0.4)
  assert report.ranking_scores(np.zeros(4), np.ones(4)) == {"auc": None, "pr_auc": None}


def test_plots_are_png_files(tmp_path):
  names = report.write_plots(str(tmp_path), LABELS, PROBS, [[3, 1], [1, 3]],
                             {"loss": [0.7, 0.5], "val_loss": [0.8, 0.6]})
  assert names == ["confusion_matrix.png", "pr_curve.png", "roc_curve.png", "training_curves.png"]
  for name in names:
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_comparison_table_has_a_row_per_model():
  reports = [{"model": "cnn", "accuracy": 0.9, "f1": 0.91, "parameters": 1000, "best_epoch": 3},
             {"model": "vgg16", "accuracy": 0.95, "parameters": 14_000_000}]
  table = compare.markdown_table(compare.comparison_rows(reports))
  lines = table.splitlines()
  assert len(lines) == 4 and lines[2].startswith("| cnn | 0.900 | 0.910 |")
  assert "14,000,000" in lines[3] and "| - |" in lines[3]
