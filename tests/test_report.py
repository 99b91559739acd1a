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


def test_evaluate_adds_aucs_the_validation_chosen_points_and_intervals():
  result = report.evaluate(LABELS, PROBS, validation_labels=LABELS, validation_probabilities=PROBS,
                           resamples=200)
  assert result["auc"] == pytest.approx(15 / 16)  # one pair of 16 misordered
  high = result["high_sensitivity"]
  # 4 validation positives cannot show 95% sensitivity with 95% confidence: all must be caught
  assert high["threshold"] == pytest.approx(0.4) and not high["validation"]["target_met"]
  assert "Clopper-Pearson" in high["rule"] and high["sensitivity"] == 1.0
  assert result["balanced"]["threshold"] == pytest.approx(0.65) and "Youden" in result["balanced"]["rule"]
  rates = {"accuracy", "precision", "sensitivity", "specificity", "f1"}
  assert set(result["ci95"]) == rates | {"auc", "pr_auc", "method"}
  assert set(high["ci95"]) == set(result["balanced"]["ci95"]) == rates
  low, high_end = result["ci95"]["accuracy"]
  assert low <= result["accuracy"] <= high_end
  assert report.ranking_scores(np.zeros(4), np.ones(4)) == {"auc": None, "pr_auc": None}
  rows = report.summary_rows(result)
  assert [r["operating point"] for r in rows] == ["default", "high sensitivity", "balanced"]
  assert report.summary_line(result).startswith("evaluated split (8 images): ROC AUC 0.938 [")
  assert rows[0]["accuracy"] == f"0.750 [{low:.3f}, {high_end:.3f}]"


def test_plots_are_png_files(tmp_path):
  names = report.write_plots(str(tmp_path), LABELS, PROBS, [[3, 1], [1, 3]],
                             {"loss": [0.7, 0.5], "val_loss": [0.8, 0.6]})
  assert names == ["confusion_matrix.png", "pr_curve.png", "roc_curve.png", "training_curves.png"]
  for name in names:
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plots_titles_carry_the_intervals():
  metrics = {"accuracy": 0.75, "auc": 0.9375, "pr_auc": None,
             "ci95": {"accuracy": [0.5, 1.0], "auc": [0.75, 1.0]}}
  titles = report._plot_titles(metrics)
  assert titles["roc"] == "ROC curve, AUC 0.938 [0.750, 1.000]"
  assert titles["confusion"] == "Confusion matrix at 0.5\naccuracy 0.750 [0.500, 1.000]"
  assert titles["pr"] == "Precision-recall curve, AP"  # no figure, no number


def test_comparison_table_has_a_row_per_model():
  reports = [{"model": "cnn", "accuracy": 0.9, "f1": 0.91, "parameters": 1000, "best_epoch": 3},
             {"model": "vgg16", "accuracy": 0.95, "parameters": 14_000_000}]
  table = compare.markdown_table(compare.comparison_rows(reports))
  lines = table.splitlines()
  assert len(lines) == 4 and lines[2].startswith("| cnn | 0.900 | 0.910 |")
  assert "14,000,000" in lines[3] and "| - |" in lines[3]


def test_compare_tests_the_paired_auc_difference_on_the_same_images(tmp_path):
  from bonefrac import workdir
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 300)
  good = np.clip(labels * 0.4 + rng.random(300) * 0.6, 0, 1)
  reports = []
  for name, scores in (("cnn", good), ("vgg16", np.clip(good + rng.normal(0, 0.4, 300), 0, 1))):
    (tmp_path / name).mkdir()
    order = rng.permutation(300)  # the files need not be in the same order
    workdir.write_predictions(str(tmp_path / name / "predictions_test.csv"),
                              [f"f{i}.jpg" for i in order], labels[order], scores[order])
    reports.append({"model": name, "split": "test", "outputs": {"predictions": "predictions_test.csv"}})
  paired = compare.paired_difference([str(tmp_path / "cnn"), str(tmp_path / "vgg16")], reports)
  assert paired["images"] == 300 and paired["difference"] > 0 and paired["significant"]
  assert "cnn is significantly better" in paired["in_words"]
  same = compare.paired_difference([str(tmp_path / "cnn")] * 2, reports[:1] * 2)
  assert same["difference"] == 0 and "not a significant difference" in same["in_words"]


def test_a_model_card_names_the_leakage_and_a_missed_target():
  from bonefrac import model_card
  result = report.evaluate(LABELS, PROBS, validation_labels=LABELS, validation_probabilities=PROBS,
                           resamples=100)
  result.update(model="cnn", dataset="bone_fracture/kaggle", split="test",
                leakage={"split": "test", "images_with_a_copy_in_train": 3, "of": 8})
  card = model_card.render(result)
  assert "**Leakage**: 3 of 8 test images have a copy in train" in card
  assert "too few fractured images" in card and "synthetic radiographs" not in card
  section = model_card.comparison_section({"cnn": result})
  assert "`cnn/model_card.md`" in section and "ROC AUC 0.938 [" in section
